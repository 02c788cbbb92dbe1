"""/healthz, /readyz and /metrics over HTTP after real conversations; JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from PIL import Image
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Settings
from bot.conversations import Conversations, Status
from bot.health import HealthServer
from bot.images import ImagePipeline
from bot.logs import setup_logging
from bot.messages import ConversationKey, ImageRef, IncomingMessage
from bot.metrics import Metrics
from bot.openrouter import OpenRouterClient
from bot.store import MemoryStore
from bot.turns import Usage
from tests.fakes.openrouter import FAKE_API_KEY, LLAMA_VISION_MODEL, FakeOpenRouter
from tests.test_conversations import RecordingSink

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_ids = iter(range(10**9))


class Running:
    """A Conversations service on a memory store, with its health server on a loopback port."""

    def __init__(self, service: Conversations, store: MemoryStore, port: int) -> None:
        self.service, self.store, self.port = service, store, port

    async def get(self, path: str) -> tuple[int, str, str]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{self.port}{path}") as response:
                return response.status, response.headers["Content-Type"], await response.text()

    async def metrics(self) -> Samples:
        status, _, text = await self.get("/metrics")
        assert status == 200
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter() as server:
        yield server


@pytest.fixture
async def running(fake: FakeOpenRouter) -> AsyncIterator[Running]:
    settings = Settings(
        base_url=fake.base_url, store_url="memory://", max_retries=2, user_messages_per_minute=0
    )
    store = MemoryStore()
    service = Conversations(
        settings,
        store=store,
        client=OpenRouterClient(settings, FAKE_API_KEY),
        images=ImagePipeline(settings),
    )
    await service.start()
    health = HealthServer(service, host="127.0.0.1", port=0)
    port = await health.start()
    yield Running(service, store, port)
    await health.close()
    await service.close()


def _message(text: str = "hi", *, thread: str = "t1", **extra: Any) -> IncomingMessage:
    return IncomingMessage(
        key=ConversationKey("test", "w1", "c1", thread),
        message_id=f"m{next(_ids)}",
        author_id="u1",
        text=text,
        **extra,
    )


def _photo() -> ImageRef:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buffer, "JPEG")
    return ImageRef(filename="ok.jpg", data=buffer.getvalue(), mime_type="image/jpeg")


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def test_metrics_expose_messages_latency_tokens_cost_images_and_dedup(
    running: Running,
) -> None:
    # A JPEG's first bytes and then nothing of one (plain text would be read as a text file).
    broken = ImageRef(filename="bad.jpg", data=b"\xff\xd8\xff not a jpeg", mime_type="image/jpeg")
    message = _message("what is it?", images=(_photo(), broken))
    answered = await running.service.handle(message, RecordingSink())
    duplicate = await running.service.handle(message, RecordingSink())
    assert (answered.status, duplicate.status) == (Status.ANSWERED, Status.DUPLICATE)
    assert answered.usage is not None

    status, content_type, _ = await running.get("/metrics")
    samples = await running.metrics()

    assert status == 200 and content_type.startswith("text/plain")
    assert _value(samples, "glimpse_messages_total", platform="test", status="answered") == 1
    assert _value(samples, "glimpse_messages_total", platform="test", status="duplicate") == 1
    assert _value(samples, "glimpse_dedup_hits_total", platform="test") == 1
    assert _value(samples, "glimpse_first_token_seconds_count", platform="test") == 1
    assert _value(samples, "glimpse_answer_seconds_count", platform="test") == 1
    assert _value(samples, "glimpse_answer_seconds_sum", platform="test") > 0
    usage = answered.usage
    answer = {"model": LLAMA_VISION_MODEL, "kind": "answer"}
    assert _value(samples, "glimpse_prompt_tokens_total", **answer) == usage.prompt_tokens
    assert _value(samples, "glimpse_completion_tokens_total", **answer) == usage.completion_tokens
    assert _value(samples, "glimpse_cost_usd_total", **answer) == pytest.approx(usage.cost)
    assert _value(samples, "glimpse_summaries_total", result="made") == 0
    assert _value(samples, "glimpse_images_total", result="processed") == 1
    assert _value(samples, "glimpse_images_total", result="refused") == 1
    assert _value(samples, "glimpse_model_retries_total", layer="sdk") == 0
    assert _value(samples, "glimpse_answers_in_flight") == 0
    assert _value(samples, "glimpse_messages_queued") == 0


class _Collect(logging.Handler):
    """Like the CLI's handler: no level of its own, so it shows whatever reaches the root."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def root_output() -> Iterator[_Collect]:
    root, handler = logging.getLogger(), _Collect()
    level = root.level
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


async def test_retries_are_counted_and_the_log_output_is_unchanged(
    running: Running, fake: FakeOpenRouter, root_output: _Collect
) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    fake.fail_next(503, retry_after_ms=1)  # the SDK retries this before the stream starts
    fake.error_mid_stream(after_chunks=0)  # the client retries this: no text had arrived
    assert (await running.service.handle(_message(), RecordingSink())).status is Status.ANSWERED
    quiet = [line for line in root_output.lines if "etrying" in line]
    logging.getLogger().setLevel(logging.INFO)
    fake.fail_next(503, retry_after_ms=1)
    assert (await running.service.handle(_message(), RecordingSink())).status is Status.ANSWERED

    samples = await running.metrics()
    assert _value(samples, "glimpse_model_retries_total", layer="sdk") == 2
    assert _value(samples, "glimpse_model_retries_total", layer="stream") == 1
    assert quiet == []  # at WARNING the INFO retry lines stay hidden, as without metrics
    assert [line for line in root_output.lines if "etrying" in line] == [
        "Retrying request in 0.001000 seconds (retry 1 of 2)"
    ]


async def test_queued_and_in_flight_gauges_follow_the_answers(
    running: Running, fake: FakeOpenRouter
) -> None:
    fake.first_token_latency_seconds = 0.5
    answers = [
        asyncio.create_task(running.service.handle(_message(f"n{i}"), RecordingSink()))
        for i in range(2)
    ]
    for _ in range(200):
        if fake.active_streams:
            break
        await asyncio.sleep(0.01)
    during = await running.metrics()
    await asyncio.gather(*answers)
    after = await running.metrics()

    assert _value(during, "glimpse_answers_in_flight") == 1
    assert _value(during, "glimpse_messages_queued") == 1  # same thread: waits its turn
    assert _value(after, "glimpse_answers_in_flight") == 0
    assert _value(after, "glimpse_messages_queued") == 0


def test_summaries_are_counted_by_result_and_their_usage_by_kind() -> None:
    metrics = Metrics()
    metrics.summary("made", Usage("m", prompt_tokens=900, completion_tokens=80, cost=0.002))
    metrics.summary("failed", Usage("m", prompt_tokens=700))  # billed, then the call broke
    metrics.summary("skipped")
    value = metrics.registry.get_sample_value

    for result in ("made", "failed", "skipped"):
        assert value("glimpse_summaries_total", {"result": result}) == 1
    summary = {"model": "m", "kind": "summary"}
    assert value("glimpse_prompt_tokens_total", summary) == 1600
    assert value("glimpse_completion_tokens_total", summary) == 80
    assert value("glimpse_cost_usd_total", summary) == pytest.approx(0.002)
    assert value("glimpse_prompt_tokens_total", {"model": "m", "kind": "answer"}) is None
    with pytest.raises(ValueError):
        metrics.summary("made it")


def test_each_service_counts_in_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.image_results(processed=3, refused=0)
    assert first.registry.get_sample_value("glimpse_images_total", {"result": "processed"}) == 3
    assert second.registry.get_sample_value("glimpse_images_total", {"result": "processed"}) == 0
    assert REGISTRY.get_sample_value("glimpse_images_total", {"result": "processed"}) is None


async def test_healthz_is_always_ok_and_readyz_needs_store_and_platforms(running: Running) -> None:
    assert (await running.get("/healthz"))[::2] == (200, "ok\n")
    running.service.readiness.expect(["slack", "discord"])
    running.service.readiness.set("slack", True)

    status, _, text = await running.get("/readyz")
    assert status == 503
    assert json.loads(text)["platforms"] == {"slack": "connected", "discord": "not connected"}

    running.service.readiness.set("discord", True)
    status, _, text = await running.get("/readyz")
    assert (status, json.loads(text)["store"]) == (200, "ok")

    await running.store.close()
    status, _, text = await running.get("/readyz")
    assert status == 503 and json.loads(text)["store"].startswith("unreachable")
    assert (await running.get("/healthz"))[0] == 200


async def test_readyz_fails_while_draining(running: Running) -> None:
    assert (await running.get("/readyz"))[0] == 200
    await running.service.drain(timeout_seconds=1)
    status, _, text = await running.get("/readyz")
    assert status == 503 and json.loads(text)["draining"] is True


@pytest.fixture
def restored_logging() -> Iterator[None]:
    names = ["", "httpx", "httpx2", "openai", "aiohttp.access", "discord.gateway"]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    handlers = list(logging.getLogger().handlers)
    yield
    logging.getLogger().handlers[:] = handlers
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def test_a_json_log_line_is_valid_json_and_never_shows_a_key(
    restored_logging: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-or-v1-test.key.not.real"
    monkeypatch.setenv("OPENROUTER_API_KEY", key)
    setup_logging("INFO", "json")
    logging.getLogger("glimpse.test").warning("calling OpenRouter with %s", key)

    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "glimpse.test"
    assert entry["message"] == "calling OpenRouter with [redacted]"
    assert key not in line
