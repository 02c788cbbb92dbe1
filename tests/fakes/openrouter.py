"""A loopback fake of OpenRouter's HTTP + SSE API, scriptable per request, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.server import LoopbackServer

__all__ = [
    "DONE_EVENT",
    "FAKE_API_KEY",
    "LLAMA_VISION_MODEL",
    "PROCESSING_EVENT",
    "QWEN_VISION_MODEL",
    "TEXT_ONLY_MODEL",
    "Behaviour",
    "FakeOpenRouter",
    "RecordedRequest",
    "content_event",
    "model_catalogue",
    "split_reply",
]

FAKE_API_KEY = "sk-or-v1-fake.key.for.tests"  # dotted: never the shape of a real key
LLAMA_VISION_MODEL = "meta-llama/llama-3.2-90b-vision-instruct"
TEXT_ONLY_MODEL = "meta-llama/llama-3.1-8b-instruct"
QWEN_VISION_MODEL = "qwen/qwen2.5-vl-72b-instruct"  # not Llama: another tokenizer, a longer context
API_PREFIX = "/api/v1"
DEFAULT_REPLY = "The picture shows a small red boat on a calm lake at sunset."
DEFAULT_CHUNKS = 8
PROMPT_CHARS_PER_TOKEN = 4
HANG_FOREVER_SECONDS = 3600.0
SERVER_BACKLOG = 4096
SHUTDOWN_TIMEOUT_SECONDS = 1.0
PROCESSING_EVENT = b": OPENROUTER PROCESSING\n\n"  # the comment OpenRouter sends while it waits
DONE_EVENT = b"data: [DONE]\n\n"

Responder = Callable[[dict[str, Any]], str]


def model_catalogue() -> list[dict[str, Any]]:
    """GET /models entries, in OpenRouter's shape (prices are strings of USD per token / per image)."""
    return [
        {
            "id": LLAMA_VISION_MODEL,
            "canonical_slug": LLAMA_VISION_MODEL,
            "name": "Meta: Llama 3.2 90B Vision Instruct",
            "created": 1727222400,
            "context_length": 4096,
            "architecture": {
                "modality": "text+image->text",
                "input_modalities": ["text", "image"],
                "output_modalities": ["text"],
                "tokenizer": "Llama3",
                "instruct_type": "llama3",
            },
            "pricing": {
                "prompt": "0.0000008",
                "completion": "0.0000016",
                "request": "0",
                "image": "0.005146",
                "web_search": "0",
                "internal_reasoning": "0",
            },
            "top_provider": {
                "context_length": 4096,
                "max_completion_tokens": 2048,
                "is_moderated": False,
            },
            "per_request_limits": None,
            "supported_parameters": ["max_tokens", "temperature", "top_p", "stop"],
        },
        {
            "id": TEXT_ONLY_MODEL,
            "canonical_slug": TEXT_ONLY_MODEL,
            "name": "Meta: Llama 3.1 8B Instruct",
            "created": 1721692800,
            "context_length": 131072,
            "architecture": {
                "modality": "text->text",
                "input_modalities": ["text"],
                "output_modalities": ["text"],
                "tokenizer": "Llama3",
                "instruct_type": "llama3",
            },
            "pricing": {
                "prompt": "0.00000002",
                "completion": "0.00000005",
                "request": "0",
                "image": "0",
            },
            "top_provider": {
                "context_length": 131072,
                "max_completion_tokens": 16384,
                "is_moderated": False,
            },
            "per_request_limits": None,
            "supported_parameters": ["max_tokens", "temperature", "top_p", "stop", "tools"],
        },
        {
            "id": QWEN_VISION_MODEL,
            "canonical_slug": QWEN_VISION_MODEL,
            "name": "Qwen: Qwen2.5 VL 72B Instruct",
            "created": 1738368000,
            "context_length": 32768,
            "architecture": {
                "modality": "text+image->text",
                "input_modalities": ["text", "image"],
                "output_modalities": ["text"],
                "tokenizer": "Qwen",
                "instruct_type": None,
            },
            "pricing": {
                "prompt": "0.00000025",
                "completion": "0.00000075",
                "request": "0",
                "image": "0.0004",
            },
            "top_provider": {
                "context_length": 32768,
                "max_completion_tokens": 8192,
                "is_moderated": False,
            },
            "per_request_limits": None,
            "supported_parameters": ["max_tokens", "temperature", "top_p", "stop"],
            "expiration_date": None,
        },
    ]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received: method, path, headers (case-insensitive) and JSON body (None for GET)."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: Any
    # the client's (host, port): the same for requests on one kept-alive connection
    peer: Any = None


# --- one-shot behaviours, consumed in order by the next requests of a route ---


@dataclass(frozen=True, slots=True)
class _Fail:
    status: int
    message: str
    retry_after: float | None
    retry_after_ms: int | None


@dataclass(frozen=True, slots=True)
class _ErrorMidStream:
    after_chunks: int
    code: int | str
    message: str


@dataclass(frozen=True, slots=True)
class _Hang:
    seconds: float


@dataclass(frozen=True, slots=True)
class _StallMidStream:
    after_chunks: int
    seconds: float


@dataclass(frozen=True, slots=True)
class _ResetMidStream:
    after_chunks: int


@dataclass(frozen=True, slots=True)
class _EndEarly:
    after_chunks: int


@dataclass(frozen=True, slots=True)
class _MalformedChunk:
    after_chunks: int


@dataclass(frozen=True, slots=True)
class _Reply:
    text: str


Behaviour = (
    _Fail
    | _ErrorMidStream
    | _Hang
    | _StallMidStream
    | _ResetMidStream
    | _EndEarly
    | _MalformedChunk
    | _Reply
)

_DEFAULT_MESSAGES = {
    400: "Invalid request: max_tokens must be a positive integer",
    401: "No auth credentials found",
    402: "Insufficient credits. Add more using https://openrouter.ai/credits",
    403: "Your input was flagged by the moderation model",
    404: "No endpoints found for this model",
    408: "Request timed out",
    429: "Rate limit exceeded: too many requests",
    500: "Internal Server Error",
    502: "Provider returned error",
    503: "No available model provider that meets your routing requirements",
}


@dataclass
class FakeOpenRouter(LoopbackServer):
    """OpenRouter on 127.0.0.1: chat completions (JSON and SSE), GET /models, GET /key.

    Use as `async with FakeOpenRouter() as fake:` and point clients at `fake.base_url`.
    """

    # handler_cancellation: a handler stops as soon as its client goes away (hung or abandoned streams).
    RUNNER_OPTIONS: ClassVar[dict[str, Any]] = {
        "shutdown_timeout": SHUTDOWN_TIMEOUT_SECONDS,
        "handler_cancellation": True,
    }
    SITE_OPTIONS: ClassVar[dict[str, Any]] = {"backlog": SERVER_BACKLOG}

    api_key: str = FAKE_API_KEY
    reply: str = DEFAULT_REPLY
    chunks: int = DEFAULT_CHUNKS  # content deltas the reply is split into
    chunk_delay_seconds: float = 0.0  # pause between deltas
    done_linger_seconds: float = 0.0  # pause between `data: [DONE]` and the end of the body
    first_token_latency_seconds: float = (
        0.0  # pause after the processing comment, before the first delta
    )
    record_requests: bool = True  # benchmarks can turn this off
    gzip_streams: bool = False  # send SSE bodies with Content-Encoding: gzip
    responder: Responder | None = None  # body -> reply text; beats `reply`
    answering_model: str | None = None  # model named in responses; default: the request's model
    models: list[dict[str, Any]] = field(default_factory=model_catalogue)
    key_data: dict[str, Any] = field(
        default_factory=lambda: {
            "label": "sk-or-v1-fak...sts",
            "limit": 100.0,
            "limit_remaining": 74.5,
            "limit_reset": "monthly",
            "usage": 25.5,
            "is_free_tier": False,
            "is_provisioning_key": False,
        }
    )
    requests: list[RecordedRequest] = field(default_factory=list)
    request_count: int = 0
    active_streams: int = 0  # SSE responses currently open
    peak_streams: int = 0  # the most SSE responses ever open at once
    scripted: Callable[[dict[str, Any]], bool] | None = None  # who meets faults; None: all
    # Models OpenRouter no longer serves: a chat request naming one gets a 404 "No endpoints found
    # for …", as retired models do (the fallback `models` list of the request is not tried).
    gone_models: set[str] = field(default_factory=set)
    reported_prompt_tokens: int | None = None  # usage's prompt_tokens; None: ~4 characters a token

    def __post_init__(self) -> None:
        self._queues: dict[str, deque[Behaviour]] = {
            "chat": deque(),
            "models": deque(),
            "key": deque(),
        }
        self._closing = asyncio.Event()

    # --- lifecycle ---

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(f"{API_PREFIX}/chat/completions", self._chat)
        app.router.add_get(f"{API_PREFIX}/models", self._models)
        app.router.add_get(f"{API_PREFIX}/key", self._key)
        return app

    async def _before_close(self) -> None:
        self._closing.set()

    # --- scripting ---

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        retry_after_ms: int | None = None,
        message: str | None = None,
        route: str = "chat",
    ) -> None:
        """Answer the next `times` requests of `route` ("chat", "models", "key") with an HTTP error."""
        text = message if message is not None else _DEFAULT_MESSAGES.get(status, f"Error {status}")
        for _ in range(times):
            self._queues[route].append(_Fail(status, text, retry_after, retry_after_ms))

    def error_mid_stream(
        self,
        after_chunks: int,
        code: int | str = 502,
        message: str = "Provider disconnected unexpectedly",
    ) -> None:
        """Stream `after_chunks` deltas, then OpenRouter's error chunk (finish_reason "error") and end."""
        self._queues["chat"].append(_ErrorMidStream(after_chunks, code, message))

    def hang_next(self, seconds: float = HANG_FOREVER_SECONDS) -> None:
        """Accept the next chat request and send nothing for `seconds` (or until the fake closes)."""
        self._queues["chat"].append(_Hang(seconds))

    def stall_mid_stream(self, after_chunks: int, seconds: float = HANG_FOREVER_SECONDS) -> None:
        """The next stream sends `after_chunks` deltas, then nothing for `seconds`, then the rest."""
        self._queues["chat"].append(_StallMidStream(after_chunks, seconds))

    def reset_connection_mid_stream(self, after_chunks: int) -> None:
        """Stream `after_chunks` deltas, then abort the TCP connection."""
        self._queues["chat"].append(_ResetMidStream(after_chunks))

    def end_stream_early_next(self, after_chunks: int) -> None:
        """Stream `after_chunks` deltas, then end the body cleanly: no finish_reason, usage or [DONE]."""
        self._queues["chat"].append(_EndEarly(after_chunks))

    def malformed_chunk_next(self, after_chunks: int = 1) -> None:
        """Stream `after_chunks` deltas, then a `data:` line that is not JSON, then the rest."""
        self._queues["chat"].append(_MalformedChunk(after_chunks))

    def reply_next(self, text: str) -> None:
        """Answer the next chat request with `text` instead of the default reply."""
        self._queues["chat"].append(_Reply(text))

    def expire(self, model: str, date: str) -> None:
        """List `model` with OpenRouter's `expiration_date` (YYYY-MM-DD) from now on."""
        entry = next(entry for entry in self.models if entry["id"] == model)
        entry["expiration_date"] = date

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # --- handlers ---

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self._record(request, body)
        if (denied := self._check_auth(request)) is not None:
            return denied
        if str(body.get("model")) in self.gone_models:
            message = f"No endpoints found for {body.get('model')}."
            return _error_response(_Fail(404, message, None, None))
        scripted = self.scripted is None or self.scripted(body)
        behaviour = self._next("chat") if scripted else None
        if isinstance(behaviour, _Fail):
            return _error_response(behaviour)
        if isinstance(behaviour, _Hang):
            await self._sleep(behaviour.seconds)
        text = behaviour.text if isinstance(behaviour, _Reply) else self._reply_for(body)
        model = self.answering_model or str(body.get("model") or LLAMA_VISION_MODEL)
        if not body.get("stream"):
            return web.json_response(self._completion(body, model, text))
        return await self._stream(request, body, model, text, behaviour)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self._record(request, None)  # OpenRouter serves the model list without a key
        behaviour = self._next("models")
        if isinstance(behaviour, _Fail):
            return _error_response(behaviour)
        return web.json_response({"data": self.models})

    async def _key(self, request: web.Request) -> web.StreamResponse:
        self._record(request, None)
        if (denied := self._check_auth(request)) is not None:
            return denied
        behaviour = self._next("key")
        if isinstance(behaviour, _Fail):
            return _error_response(behaviour)
        return web.json_response({"data": self.key_data})

    # --- streaming ---

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        model: str,
        text: str,
        behaviour: Behaviour | None,
    ) -> web.StreamResponse:
        generation_id = f"gen-{uuid.uuid4().hex[:20]}"
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Generation-Id": generation_id,
            }
        )
        self.active_streams += 1
        self.peak_streams = max(self.peak_streams, self.active_streams)
        try:
            return await self._write_stream(
                request, response, body, model, text, behaviour, generation_id
            )
        finally:
            self.active_streams -= 1

    async def _write_stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        body: dict[str, Any],
        model: str,
        text: str,
        behaviour: Behaviour | None,
        generation_id: str,
    ) -> web.StreamResponse:
        if self.gzip_streams:
            response.enable_compression(web.ContentCoding.gzip)
        await response.prepare(request)
        await response.write(PROCESSING_EVENT)
        if self.first_token_latency_seconds:
            await asyncio.sleep(self.first_token_latency_seconds)
        pieces = split_reply(text, self.chunks)
        stop_after = _stop_after(behaviour, len(pieces))
        created = int(time.time())
        for index, piece in enumerate(pieces[:stop_after]):
            if index and self.chunk_delay_seconds:
                await asyncio.sleep(self.chunk_delay_seconds)
            if isinstance(behaviour, _StallMidStream) and index == behaviour.after_chunks:
                await self._sleep(behaviour.seconds)
            await response.write(content_event(generation_id, created, model, piece))
            if isinstance(behaviour, _MalformedChunk) and index + 1 == behaviour.after_chunks:
                await response.write(
                    b'data: {"id": "' + generation_id.encode() + b'", "choices": [\n\n'
                )
        if isinstance(behaviour, _ResetMidStream):
            _abort(request)
            return response
        if isinstance(behaviour, _ErrorMidStream):
            await response.write(_sse(_error_chunk(generation_id, created, model, behaviour)))
        if isinstance(behaviour, _ErrorMidStream | _EndEarly):
            await response.write_eof()
            return response
        for event in self.closing_events(generation_id, created, model, body, len(pieces)):
            await response.write(event)
        if self.done_linger_seconds:
            await asyncio.sleep(self.done_linger_seconds)  # the body ends a little after [DONE]
        await response.write_eof()
        return response

    def closing_events(
        self, generation_id: str, created: int, model: str, body: dict[str, Any], pieces: int
    ) -> list[bytes]:
        """What ends a complete stream: the `stop` chunk, the usage chunk and `[DONE]`."""
        usage = self._usage(body, model, pieces)
        return [
            _sse(_chunk(generation_id, created, model, {}, "stop")),
            _sse(_chunk(generation_id, created, model, {}, None, usage=usage, choices=False)),
            DONE_EVENT,
        ]

    # --- helpers ---

    def _record(self, request: web.Request, body: Any) -> None:
        self.request_count += 1
        if self.record_requests:
            self.requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    CIMultiDict(request.headers),
                    body,
                    request.transport.get_extra_info("peername") if request.transport else None,
                )
            )

    def _check_auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") == f"Bearer {self.api_key}":
            return None
        return web.json_response({"error": {"code": 401, "message": "User not found."}}, status=401)

    def _next(self, route: str) -> Behaviour | None:
        queue = self._queues[route]
        return queue.popleft() if queue else None

    def _reply_for(self, body: dict[str, Any]) -> str:
        return self.responder(body) if self.responder is not None else self.reply

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def _usage(self, body: dict[str, Any], model: str, completion_tokens: int) -> dict[str, Any]:
        text_chars, images = _measure(body.get("messages") or [])
        prompt_tokens = max(1, text_chars // PROMPT_CHARS_PER_TOKEN) + images
        if self.reported_prompt_tokens is not None:
            prompt_tokens = self.reported_prompt_tokens
        pricing: dict[str, Any] = next((m["pricing"] for m in self.models if m["id"] == model), {})
        cost = (
            prompt_tokens * float(pricing.get("prompt", 0))
            + completion_tokens * float(pricing.get("completion", 0))
            + images * float(pricing.get("image", 0))
        )
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cost": round(cost, 12),
            "is_byok": False,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    def _completion(self, body: dict[str, Any], model: str, text: str) -> dict[str, Any]:
        return {
            "id": f"gen-{uuid.uuid4().hex[:20]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "provider": "Fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "native_finish_reason": "stop",
                }
            ],
            "usage": self._usage(body, model, len(split_reply(text, self.chunks))),
        }


def split_reply(text: str, parts: int) -> list[str]:
    """Split `text` into at most `parts` non-empty pieces at roughly equal lengths."""
    if not text:
        return []
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    pieces, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _stop_after(behaviour: Behaviour | None, total: int) -> int:
    if isinstance(behaviour, _ErrorMidStream | _ResetMidStream | _EndEarly):
        return min(behaviour.after_chunks, total)
    return total


def _measure(messages: list[dict[str, Any]]) -> tuple[int, int]:
    """Characters of text and number of images in chat messages."""
    chars = images = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
            continue
        for part in content or []:
            if part.get("type") == "text":
                chars += len(part.get("text", ""))
            elif part.get("type") == "image_url":
                images += 1
    return chars, images


def _chunk(
    generation_id: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None,
    *,
    usage: dict[str, Any] | None = None,
    choices: bool = True,
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": generation_id,
        "provider": "Fake",
        "model": model,
        "object": "chat.completion.chunk",
        "created": created,
        "choices": [],
    }
    if choices:
        chunk["choices"] = [
            {
                "index": 0,
                "delta": {"role": "assistant", **delta},
                "finish_reason": finish_reason,
                "native_finish_reason": finish_reason,
                "logprobs": None,
            }
        ]
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def content_event(generation_id: str, created: int, model: str, piece: str) -> bytes:
    """The server-sent event carrying one piece of the reply."""
    return _sse(_chunk(generation_id, created, model, {"content": piece}, None))


def _error_chunk(
    generation_id: str, created: int, model: str, behaviour: _ErrorMidStream
) -> dict[str, Any]:
    """OpenRouter's unified mid-stream error: top-level `error`, and a choice ending with "error"."""
    return {
        "id": generation_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "provider": "Fake",
        "error": {"code": behaviour.code, "message": behaviour.message},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _error_response(fail: _Fail) -> web.Response:
    headers: dict[str, str] = {}
    if fail.retry_after is not None:
        headers["Retry-After"] = f"{fail.retry_after:g}"
    if fail.retry_after_ms is not None:
        headers["retry-after-ms"] = str(fail.retry_after_ms)
    error: dict[str, Any] = {"code": fail.status, "message": fail.message}
    if fail.status == 403:
        error["metadata"] = {"reasons": ["violence"], "flagged_input": "…", "provider_name": "Fake"}
    return web.json_response({"error": error}, status=fail.status, headers=headers)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
