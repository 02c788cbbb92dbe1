"""The HTTP under the openai SDK: its httpx2 requests sent with aiohttp, a stalled read ended by one timer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.request import getproxies, proxy_bypass

import aiohttp
import httpx2
from yarl import URL

__all__ = ["RESPONSE_BODY", "AiohttpTransport", "ResponseBody"]

# The response extension that holds the body, for a reader that wants no httpx2 layers per read.
RESPONSE_BODY = "glimpse.response_body"
CONNECTION_LIMIT = 1000  # the SDK's own default (openai.DEFAULT_CONNECTION_LIMITS)
# Longer than httpx's 5 s, so a chat that pauses between messages keeps its TLS connection;
# a connection the server closed meanwhile fails fast and the SDK retries the request.
KEEPALIVE_SECONDS = 60.0

# aiohttp's errors as httpx2's, most specific first: the SDK maps httpx2.TimeoutException to
# APITimeoutError and every other transport error to APIConnectionError, then retries both.
_ERRORS: tuple[tuple[type[BaseException], type[httpx2.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx2.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx2.ReadTimeout),
    (aiohttp.ClientProxyConnectionError, httpx2.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx2.ProxyError),
    (aiohttp.ClientConnectorError, httpx2.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx2.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx2.ReadError),
    (aiohttp.ClientResponseError, httpx2.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx2.UnsupportedProtocol),
    (aiohttp.ClientError, httpx2.ReadError),
    (OSError, httpx2.ReadError),
)


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """Raise aiohttp's (and the socket's) errors as the httpx2 errors the SDK understands."""
    try:
        yield
    except httpx2.TransportError:
        raise
    except Exception as exc:
        for theirs, ours in _ERRORS:
            if isinstance(exc, theirs):
                raise ours(str(exc) or type(exc).__name__) from exc
        raise


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """httpx2's transport interface over one aiohttp session (made on first use, in the loop).

    Timeouts come from each request, as the SDK sets them: `connect` bounds the TCP/TLS
    connect, `pool` getting a connection at all, `read` the wait for the response headers and
    then every wait for more of the body. aiohttp's own read timeout re-arms a timer on every
    network read; here one timer per body checks, when it fires, how long the reader has
    been waiting (`ResponseBody`). Proxies come from the environment (HTTPS_PROXY, NO_PROXY),
    read once per host: aiohttp's `trust_env` would read it, and ~/.netrc, in a thread per request.
    Cookies are httpx2's to keep; aiohttp keeps none.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], tuple[URL | None, aiohttp.BasicAuth | None]] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=CONNECTION_LIMIT,
                keepalive_timeout=KEEPALIVE_SECONDS,
                ssl=httpx2.create_ssl_context(),  # certifi's roots, as the SDK's default client
            )
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    def _proxy(self, url: httpx2.URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        """The proxy the environment names for this URL's scheme and host, and its credentials."""
        key = (url.scheme, url.host)
        if key not in self._proxies:
            named = None if proxy_bypass(url.host) else getproxies().get(url.scheme)
            proxy = URL(named) if named else None
            auth = aiohttp.BasicAuth.from_url(proxy) if proxy is not None else None
            self._proxies[key] = (proxy.with_user(None) if proxy is not None else None), auth
        return self._proxies[key]

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout = request.extensions.get("timeout", {})
        read = timeout.get("read")
        content = await request.aread()
        proxy, proxy_auth = self._proxy(request.url)
        with _mapped_errors():
            try:
                async with asyncio.timeout(read):  # until the headers have arrived
                    response = await self._client().request(
                        request.method,
                        str(request.url),
                        headers=request.headers.multi_items(),
                        data=content or None,
                        allow_redirects=False,
                        auto_decompress=False,  # httpx2 decodes what the headers say
                        compress=None,
                        timeout=aiohttp.ClientTimeout(
                            total=None,
                            connect=timeout.get("pool"),
                            sock_connect=timeout.get("connect"),
                            sock_read=None,
                        ),
                        server_hostname=request.extensions.get("sni_hostname"),
                        proxy=proxy,
                        proxy_auth=proxy_auth,
                    )
            except TimeoutError as exc:
                if isinstance(exc, aiohttp.ServerTimeoutError):
                    raise  # aiohttp's connect timeout, which _mapped_errors maps: not a slow server
                raise httpx2.ReadTimeout(f"no response headers within {read} s") from exc
        body = ResponseBody(response, read)
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1", RESPONSE_BODY: body}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("ascii", "replace")
        return httpx2.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=body,
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class ResponseBody(httpx2.AsyncByteStream):
    """A response's body, a network read at a time; a read that waits `read_timeout` s fails.

    The reader marks when it starts waiting; one timer per `read_timeout` looks at that mark
    and either ends the wait with httpx2.ReadTimeout or sleeps until the wait could be that
    old. A reader busy elsewhere (not waiting) never times out, as with aiohttp's own timer.
    """

    def __init__(self, response: aiohttp.ClientResponse, read_timeout: float | None) -> None:
        self._response = response
        self._read_timeout = read_timeout
        self._waiting_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        now = asyncio.get_running_loop().time
        self._start_timer()
        try:
            with _mapped_errors():
                while True:
                    self._waiting_since = now()
                    block = await content.readany()
                    self._waiting_since = None
                    if not block:
                        self._complete = True
                        return
                    yield block
        finally:
            self._waiting_since = None
            self._stop_timer()

    def _start_timer(self) -> None:
        if self._read_timeout is not None and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._read_timeout, self._check)

    def _check(self) -> None:
        """The timer fired: end a wait as old as the timeout, or look again when it could be."""
        assert self._read_timeout is not None
        loop = asyncio.get_running_loop()
        since = self._waiting_since
        if since is not None and loop.time() - since >= self._read_timeout:
            self._timer = None
            self._response.content.set_exception(
                httpx2.ReadTimeout(f"no data for {self._read_timeout:g} s")
            )
            return
        self._timer = loop.call_at((since or loop.time()) + self._read_timeout, self._check)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def aclose(self) -> None:
        """Hand the connection back for reuse if the body was read to its end, else close it."""
        self._stop_timer()
        if self._complete:
            self._response.release()
            await self._response.wait_for_close()
        else:
            self._response.close()
