"""Get an image's bytes: from the adapter, or downloaded from an allowed host under a byte cap and timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from yarl import URL

from bot.images.errors import ImageRefused, display_name, too_large
from bot.images.hosts import HostPolicy
from bot.messages import ImageRef

__all__ = ["READ_CHUNK_BYTES", "fetch_bytes", "safe_url_for_log"]

READ_CHUNK_BYTES = 64 * 1024


def safe_url_for_log(url: str | None) -> str:
    """Scheme, host, port and path only: credentials and query strings (signed CDN links) stay out of logs."""
    if not url:
        return "-"
    try:
        parsed = URL(url)
    except ValueError:
        return "(unparseable url)"
    port = f":{parsed.explicit_port}" if parsed.explicit_port else ""
    return f"{parsed.scheme}://{parsed.raw_host or ''}{port}{parsed.raw_path}"


async def fetch_bytes(
    ref: ImageRef,
    *,
    session: Callable[[], aiohttp.ClientSession],
    policy: HostPolicy,
    max_bytes: int,
    timeout_seconds: float,
) -> bytes:
    """The image's bytes, or ImageRefused with a sentence for the user.

    `session` is called only when a download is needed, so adapter-held bytes never open one.
    """
    name = display_name(ref.filename)
    if ref.data is not None:
        if len(ref.data) > max_bytes:
            raise too_large(name, max_bytes, len(ref.data))
        return ref.data
    if ref.size is not None and ref.size > max_bytes:
        raise too_large(name, max_bytes, ref.size)
    try:
        url = URL(ref.url or "")
    except ValueError:
        raise ImageRefused(
            f"{name} has a link that is not a valid URL.", reason="bad_url"
        ) from None
    try:
        async with asyncio.timeout(timeout_seconds):
            await policy.check(url, name)
            return await _download(session(), url, ref, name, max_bytes, timeout_seconds)
    except TimeoutError:
        raise ImageRefused(
            f"{name} took longer than {timeout_seconds:g} s to download.", reason="timeout"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ImageRefused(
            f"{name} could not be downloaded (connection failed).",
            reason=f"connection:{type(exc).__name__}",
        ) from None


async def _download(
    session: aiohttp.ClientSession,
    url: URL,
    ref: ImageRef,
    name: str,
    max_bytes: int,
    timeout_seconds: float,
) -> bytes:
    async with session.get(
        url,
        headers=dict(ref.headers),
        allow_redirects=False,
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
    ) as response:
        _check_status(response.status, name)
        declared = response.content_length
        if declared is not None and declared > max_bytes:
            response.close()
            raise too_large(name, max_bytes, declared)
        return await _read_capped(response, name, max_bytes)


def _check_status(status: int, name: str) -> None:
    if 300 <= status < 400:
        raise ImageRefused(
            f"{name} could not be downloaded: the file host answered with a redirect, which is not followed "
            "(the bot may lack permission to read the file).",
            reason=f"redirect:{status}",
        )
    if status in (401, 403):
        raise ImageRefused(
            f"{name} could not be downloaded: the file host refused access ({status}); "
            "the bot may lack permission to read the file.",
            reason=f"status:{status}",
        )
    if status != 200:
        raise ImageRefused(
            f"{name} could not be downloaded: the file host answered {status}.",
            reason=f"status:{status}",
        )


async def _read_capped(response: aiohttp.ClientResponse, name: str, max_bytes: int) -> bytes:
    """Read the body, stopping as soon as it passes `max_bytes` (reads at most max_bytes + 1)."""
    body = bytearray()
    while True:
        chunk = await response.content.read(min(READ_CHUNK_BYTES, max_bytes + 1 - len(body)))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > max_bytes:
            response.close()
            raise too_large(name, max_bytes)
