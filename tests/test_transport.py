"""The aiohttp transport under the SDK, through httpx2, against loopback servers that misbehave."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx2
import pytest
from aiohttp import web

from bot.transport import AiohttpTransport, _mapped_errors

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMEOUT = httpx2.Timeout(5.0, read=0.3)


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=AiohttpTransport(), timeout=TIMEOUT) as client:
        yield client


async def raw_server(handler: Handler) -> tuple[asyncio.Server, str]:
    """A TCP server on 127.0.0.1 that runs `handler` for each connection; and its base URL."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def web_server(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_is_a_connect_error_not_a_timeout(
    http: httpx2.AsyncClient,
) -> None:
    with pytest.raises(httpx2.ConnectError):
        await http.get(f"http://127.0.0.1:{closed_port()}/")


@pytest.mark.parametrize(
    ("reply", "pause", "error"),
    [
        (b"", 0.0, httpx2.RemoteProtocolError),  # hangs up without answering
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", 0.0, httpx2.ReadError),
        (b"", 5.0, httpx2.ReadTimeout),  # no headers within the read timeout
    ],
    ids=["hang-up", "body-cut-short", "no-headers-in-time"],
)
async def test_a_misbehaving_server_is_the_httpx2_error_the_sdk_maps(
    http: httpx2.AsyncClient, reply: bytes, pause: float, error: type[Exception]
) -> None:
    async def misbehave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(pause)  # then the connection closes

    server, url = await raw_server(misbehave)
    async with server:
        with pytest.raises(error):
            await http.get(url)


async def test_a_body_that_stops_arriving_times_out(http: httpx2.AsyncClient) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part")
        await writer.drain()
        await asyncio.sleep(5)

    server, url = await raw_server(stall)
    async with server:
        async with http.stream("GET", url) as response:
            blocks = response.aiter_raw()
            assert await anext(blocks) == b"first part"
            with pytest.raises(httpx2.ReadTimeout):
                await anext(blocks)


async def test_a_compressed_body_is_decoded(http: httpx2.AsyncClient) -> None:
    payload = {"data": [{"id": "model", "context_length": 4096}]}

    async def compressed(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(json.dumps(payload).encode()),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    app = web.Application()
    app.router.add_get("/models", compressed)
    runner, url = await web_server(app)
    try:
        response = await http.get(f"{url}/models")
    finally:
        await runner.cleanup()
    assert response.json() == payload


async def test_a_body_read_to_its_end_gives_its_connection_back(
    http: httpx2.AsyncClient,
) -> None:
    peers: list[object] = []

    async def answer(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", answer)
    runner, url = await web_server(app)
    try:
        for _ in range(3):
            assert (await http.get(url)).text == "ok"
    finally:
        await runner.cleanup()
    assert len(set(peers)) == 1


async def test_a_body_left_unread_closes_its_connection(http: httpx2.AsyncClient) -> None:
    peers: list[object] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"x" * 1000)
            await asyncio.sleep(0.01)
        return response

    app = web.Application()
    app.router.add_get("/", endless)
    runner, url = await web_server(app)
    try:
        for _ in range(2):
            async with http.stream("GET", url) as response:
                await anext(response.aiter_raw())
    finally:
        await runner.cleanup()
    assert len(set(peers)) == 2  # the half-read connection was not reused


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ConnectionTimeoutError(), httpx2.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), httpx2.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx2.RemoteProtocolError),
        (aiohttp.ClientPayloadError("truncated"), httpx2.ReadError),
        (aiohttp.InvalidURL("ftp://x"), httpx2.UnsupportedProtocol),
        (ConnectionResetError(), httpx2.ReadError),
    ],
)
def test_aiohttp_errors_become_the_httpx2_errors_the_sdk_maps(
    raised: Exception, expected: type[Exception]
) -> None:
    with pytest.raises(expected) as caught, _mapped_errors():
        raise raised
    assert caught.value.__cause__ is raised


def test_errors_that_are_not_the_transports_pass_through() -> None:
    with pytest.raises(KeyError), _mapped_errors():
        raise KeyError("not a network error")


async def test_a_proxy_named_in_the_environment_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        return web.Response(text="through the proxy")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner, proxy_url = await web_server(app)
    target = f"http://127.0.0.1:{closed_port()}/models"  # nothing listens there
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    try:
        async with httpx2.AsyncClient(transport=AiohttpTransport(), timeout=TIMEOUT) as http:
            response = await http.get(target)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with httpx2.AsyncClient(transport=AiohttpTransport(), timeout=TIMEOUT) as http:
            with pytest.raises(httpx2.ConnectError):  # not proxied: straight to the closed port
                await http.get(target)
    finally:
        await runner.cleanup()
    assert response.text == "through the proxy"
    assert seen == [target]


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_https_verifies_the_server_against_the_trusted_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    app = web.Application()

    async def secure(request: web.Request) -> web.Response:
        return web.Response(text="secure")

    app.router.add_get("/", secure)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context).start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}/"
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        async with httpx2.AsyncClient(transport=AiohttpTransport(), timeout=TIMEOUT) as http:
            with pytest.raises(httpx2.ConnectError):  # not signed by a trusted root
                await http.get(url)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # an operator's own root, as with httpx
        async with httpx2.AsyncClient(transport=AiohttpTransport(), timeout=TIMEOUT) as http:
            response = await http.get(url)
    finally:
        await runner.cleanup()
    assert response.text == "secure"
