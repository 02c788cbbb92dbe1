"""Image downloads against a real loopback HTTP server: host policy, redirects, limits, timeouts, headers."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.config import Settings
from bot.images import ImagePipeline
from bot.images.hosts import GuardedResolver, HostPolicy, is_public_address, normalise_host
from bot.messages import ImageRef
from tests import images_corpus as corpus

CAP_BYTES = 256 * 1024
STREAM_TOTAL_BYTES = 64 * 1024 * 1024
STREAM_CHUNK_BYTES = 64 * 1024
TIMEOUT_SECONDS = 10.0  # generous: a busy machine must not turn a good download into a timeout
SLOW_TIMEOUT_SECONDS = 0.5  # for the test of a server that never finishes
SECRET = "Bearer xoxb-never.log.this"
PUBLIC_IP = "93.184.216.34"


@dataclass
class ServerState:
    hits: list[str] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    streamed_bytes: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    two_hits: asyncio.Event = field(default_factory=asyncio.Event)

    def hit(self, request: web.Request) -> None:
        self.hits.append(request.path)
        if len(self.hits) >= 2:
            self.two_hits.set()


def build_app(state: ServerState) -> web.Application:
    async def image(request: web.Request) -> web.Response:
        state.hit(request)
        state.authorization.append(request.headers.get("Authorization"))
        return web.Response(body=corpus.jpeg_bytes((1600, 1200)), content_type="image/jpeg")

    async def redirect(request: web.Request) -> web.Response:
        state.hit(request)
        raise web.HTTPFound("/image.jpg")

    async def missing(request: web.Request) -> web.Response:
        state.hit(request)
        return web.Response(status=404, text="no such file")

    async def slow(request: web.Request) -> web.Response:
        state.hit(request)
        await state.release.wait()
        return web.Response(body=corpus.jpeg_bytes(), content_type="image/jpeg")

    async def declared_big(request: web.Request) -> web.Response:
        state.hit(request)
        return web.Response(
            body=b"\xff\xd8\xff" + b"\x00" * (2 * CAP_BYTES), content_type="image/jpeg"
        )

    async def endless(request: web.Request) -> web.StreamResponse:
        state.hit(request)
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"\x00" * STREAM_CHUNK_BYTES
        while state.streamed_bytes < STREAM_TOTAL_BYTES:
            await response.write(chunk)
            state.streamed_bytes += len(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/image.jpg", image)
    app.router.add_get("/redirect.jpg", redirect)
    app.router.add_get("/missing.jpg", missing)
    app.router.add_get("/slow.jpg", slow)
    app.router.add_get("/big.jpg", declared_big)
    app.router.add_get("/endless.jpg", endless)
    return app


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, ServerState]]:
    state = ServerState()
    test_server = TestServer(build_app(state), host="127.0.0.1")
    await test_server.start_server()
    yield test_server, state
    state.release.set()
    await test_server.close()


def settings(**overrides: Any) -> Settings:
    return Settings(
        **{
            "image_max_bytes": CAP_BYTES,
            "image_fetch_timeout_seconds": TIMEOUT_SECONDS,
            **overrides,
        }
    )


@pytest.fixture
async def pipeline() -> AsyncIterator[ImagePipeline]:
    images = ImagePipeline(settings(), trusted_hosts=["127.0.0.1"])
    yield images
    await images.close()


def url_ref(url: object, name: str = "photo.jpg", **fields: Any) -> ImageRef:
    return ImageRef(filename=name, url=str(url), mime_type="image/jpeg", **fields)


async def refusal(images: ImagePipeline, ref: ImageRef) -> str:
    batch = await images.prepare([ref])
    assert batch.images == ()
    (message,) = batch.refusals
    return message


# --- downloads that work -----------------------------------------------------------------------


async def test_trusted_loopback_host_is_fetched_with_auth_header(
    server: tuple[TestServer, ServerState],
    pipeline: ImagePipeline,
    caplog: pytest.LogCaptureFixture,
) -> None:
    test_server, state = server
    ref = url_ref(test_server.make_url("/image.jpg"), headers={"Authorization": SECRET})
    with caplog.at_level(logging.DEBUG):
        batch = await pipeline.prepare([ref])
    assert batch.refusals == ()
    assert [(i.mime_type, i.width, i.height) for i in batch.images] == [("image/jpeg", 1120, 840)]
    assert state.authorization == [SECRET]
    assert "xoxb" not in caplog.text


async def test_image_hosts_setting_is_trusted_too(server: tuple[TestServer, ServerState]) -> None:
    test_server, state = server
    images = ImagePipeline(settings(image_hosts=["127.0.0.1:1"]))
    try:
        batch = await images.prepare([url_ref(test_server.make_url("/image.jpg"))])
    finally:
        await images.close()
    assert batch.refusals == () and len(batch.images) == 1


async def test_passed_in_session_is_used_and_left_open(
    server: tuple[TestServer, ServerState],
) -> None:
    test_server, state = server
    async with aiohttp.ClientSession() as session:
        images = ImagePipeline(
            settings(), trusted_hosts=["http://127.0.0.1:9/api/v10"], session=session
        )
        batch = await images.prepare([url_ref(test_server.make_url("/image.jpg"))])
        await images.close()
        assert not session.closed
    assert len(batch.images) == 1


async def test_own_session_is_reused_then_closed(server: tuple[TestServer, ServerState]) -> None:
    test_server, state = server
    images = ImagePipeline(settings(), trusted_hosts=["127.0.0.1"])
    await images.prepare([url_ref(test_server.make_url("/image.jpg"))])
    session = images._session
    await images.prepare([url_ref(test_server.make_url("/image.jpg"))])
    assert images._session is session and session is not None
    await images.close()
    assert session.closed
    assert len(state.hits) == 2


async def test_downloads_run_concurrently(
    server: tuple[TestServer, ServerState], pipeline: ImagePipeline
) -> None:
    test_server, state = server
    refs = [
        url_ref(test_server.make_url("/slow.jpg"), name="slow.jpg"),
        url_ref(test_server.make_url("/image.jpg")),
    ]

    async def release_when_both_arrived() -> None:
        await state.two_hits.wait()
        state.release.set()

    releaser = asyncio.create_task(release_when_both_arrived())
    batch = await pipeline.prepare(refs)
    await releaser
    assert batch.refusals == ()
    assert batch.images[0].label == "grid of 2 images: 1 = slow.jpg, 2 = photo.jpg"


# --- refused downloads -------------------------------------------------------------------------


async def test_redirect_is_refused_not_followed(
    server: tuple[TestServer, ServerState],
    pipeline: ImagePipeline,
    caplog: pytest.LogCaptureFixture,
) -> None:
    test_server, state = server
    ref = url_ref(test_server.make_url("/redirect.jpg"), headers={"Authorization": SECRET})
    with caplog.at_level(logging.INFO, logger="glimpse.images"):
        message = await refusal(pipeline, ref)
    assert "redirect" in message
    assert state.hits == ["/redirect.jpg"]
    assert "photo.jpg" in caplog.text and "redirect:302" in caplog.text
    assert "xoxb" not in caplog.text


async def test_error_status_is_refused(
    server: tuple[TestServer, ServerState], pipeline: ImagePipeline
) -> None:
    test_server, _ = server
    message = await refusal(pipeline, url_ref(test_server.make_url("/missing.jpg")))
    assert message == "photo.jpg could not be downloaded: the file host answered 404."


async def test_untrusted_loopback_is_refused_before_connecting(
    server: tuple[TestServer, ServerState],
) -> None:
    test_server, state = server
    images = ImagePipeline(settings())
    try:
        message = await refusal(images, url_ref(test_server.make_url("/image.jpg")))
    finally:
        await images.close()
    assert message == "photo.jpg is on 127.0.0.1, which is not an allowed image host."
    assert state.hits == []


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/cat.jpg",
        "https://cdn.discordapp.com.evil.example/cat.jpg",
        "https://cdn.discordapp.com@evil.example/cat.jpg",
        "https://images-ext-1.discordapp.net/x.jpg",
    ],
)
async def test_other_hosts_are_refused(pipeline: ImagePipeline, url: str) -> None:
    assert "not an allowed image host" in await refusal(pipeline, url_ref(url))


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://cdn.discordapp.com/a.jpg", "gopher://127.0.0.1/x"]
)
async def test_non_http_schemes_are_refused(pipeline: ImagePipeline, url: str) -> None:
    assert "only http and https downloads are allowed" in await refusal(pipeline, url_ref(url))


async def test_platform_host_over_plain_http_is_refused(pipeline: ImagePipeline) -> None:
    message = await refusal(pipeline, url_ref("http://cdn.discordapp.com/attachments/1/2/a.jpg"))
    assert "https only" in message


def fake_getaddrinfo(answers: dict[str, list[str]]) -> Any:
    async def getaddrinfo(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    return getaddrinfo


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "::ffff:192.168.0.1"]
)
async def test_platform_host_resolving_to_a_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, pipeline: ImagePipeline, address: str
) -> None:
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(
        loop, "getaddrinfo", fake_getaddrinfo({"files.slack.com": [PUBLIC_IP, address]})
    )
    message = await refusal(pipeline, url_ref("https://files.slack.com/files-pri/T1-F1/cat.jpg"))
    assert "private network address" in message


async def test_unknown_platform_host_name_is_refused(
    monkeypatch: pytest.MonkeyPatch, pipeline: ImagePipeline
) -> None:
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo({}))
    message = await refusal(pipeline, url_ref("https://cdn.discordapp.com/attachments/1/2/a.jpg"))
    assert "was not found" in message


async def test_guarded_resolver_drops_private_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        "cdn.discordapp.com": [PUBLIC_IP, "10.0.0.1"],
        "media.discordapp.net": ["127.0.0.1"],
        "fake-discord": ["127.0.0.1"],
    }
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo(answers))
    resolver = GuardedResolver(HostPolicy(["fake-discord"]))
    try:
        assert [r["host"] for r in await resolver.resolve("cdn.discordapp.com", 443)] == [PUBLIC_IP]
        with pytest.raises(OSError):
            await resolver.resolve("media.discordapp.net", 443)
        assert [r["host"] for r in await resolver.resolve("fake-discord", 80)] == ["127.0.0.1"]
    finally:
        await resolver.close()


async def test_slow_server_times_out(server: tuple[TestServer, ServerState]) -> None:
    test_server, _ = server
    impatient = ImagePipeline(
        settings(image_fetch_timeout_seconds=SLOW_TIMEOUT_SECONDS), trusted_hosts=["127.0.0.1"]
    )
    try:
        message = await refusal(impatient, url_ref(test_server.make_url("/slow.jpg")))
    finally:
        await impatient.close()
    assert message == "photo.jpg took longer than 0.5 s to download."


async def test_declared_size_over_cap_is_refused_without_downloading(
    server: tuple[TestServer, ServerState], pipeline: ImagePipeline
) -> None:
    test_server, state = server
    message = await refusal(
        pipeline, url_ref(test_server.make_url("/image.jpg"), size=31 * 1024 * 1024)
    )
    assert message == "photo.jpg is 31 MB; the limit is 256 KB."
    assert state.hits == []


async def test_content_length_over_cap_is_refused(
    server: tuple[TestServer, ServerState], pipeline: ImagePipeline
) -> None:
    test_server, state = server
    message = await refusal(pipeline, url_ref(test_server.make_url("/big.jpg")))
    assert message == "photo.jpg is 512 KB; the limit is 256 KB."
    assert state.hits == ["/big.jpg"]


async def test_chunked_body_over_cap_stops_reading_at_the_cap(
    server: tuple[TestServer, ServerState], pipeline: ImagePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    test_server, state = server
    consumed: list[int] = []
    original_read = aiohttp.StreamReader.read

    async def counting_read(self: aiohttp.StreamReader, n: int = -1) -> bytes:
        data = await original_read(self, n)
        consumed.append(len(data))
        return data

    monkeypatch.setattr(aiohttp.StreamReader, "read", counting_read)
    message = await refusal(pipeline, url_ref(test_server.make_url("/endless.jpg")))
    assert message == "photo.jpg is larger than the 256 KB limit."
    assert sum(consumed) == CAP_BYTES + 1
    await asyncio.sleep(0.05)
    assert state.streamed_bytes < STREAM_TOTAL_BYTES // 2


# --- host policy units -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "host"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("LocalHost:8000", "localhost"),
        ("http://127.0.0.1:8000/api/v10", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("files.example.com.", "files.example.com"),
        ("  ", None),
    ],
)
def test_normalise_host(entry: str, host: str | None) -> None:
    assert normalise_host(entry) == host


@pytest.mark.parametrize(
    ("address", "public"),
    [
        (PUBLIC_IP, True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.5", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("64:ff9b::a00:1", False),
        ("224.0.0.1", False),
        ("not-an-ip", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_platform_hosts() -> None:
    policy = HostPolicy()
    for host in (
        "cdn.discordapp.com",
        "media.discordapp.net",
        "files.slack.com",
        "files-origin.slack.com",
        "FILES-PRI.SLACK.COM.",
    ):
        assert policy.is_platform(host), host
    for host in (
        "slack.com",
        "evil-files.slack.com",
        "files.slack.com.evil.io",
        "discordapp.com",
        "a.slack-edge.com",
    ):
        assert not policy.is_platform(host), host
