"""The only module that speaks OpenRouter's wire format: streamed chat completions, GET /models, GET /key."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

import httpx2
import openai

from bot.chunks import UNREADABLE_CHUNK, decode_chunk
from bot.config import DEFAULT_MODEL, Settings
from bot.sse import EventDecoder
from bot.transport import RESPONSE_BODY, AiohttpTransport, ResponseBody
from bot.turns import Usage

__all__ = [
    "Completion",
    "ErrorKind",
    "ModelError",
    "ModelInfo",
    "NO_SDK_TELEMETRY",
    "OpenRouterClient",
    "StreamEnd",
    "TextDelta",
    "build_extra_body",
]

logger = logging.getLogger("glimpse.openrouter")

FALLBACK_CONTEXT_TOKENS = 4096
MODEL_INFO_RETRY_SECONDS = 300.0  # a failed GET /models is tried again after this long
CATALOGUE_TTL_SECONDS = 3600.0  # a read GET /models listing is read again after this long
MODELS_TIMEOUT_SECONDS = 15.0
CONNECT_TIMEOUT_SECONDS = 10.0
EARLY_STREAM_RETRIES = 2  # our own retries, only for failures inside the stream before any text
EARLY_RETRY_BASE_DELAY_SECONDS = 0.5
EARLY_RETRY_MAX_DELAY_SECONDS = 4.0
USER_DETAIL_MAX_CHARS = 160
LOG_DETAIL_MAX_CHARS = 300
DRAIN_SECONDS = 0.1  # reading what follows `data: [DONE]`, so HTTP/1.1 can reuse the connection

# OpenRouter compresses prompts of endpoints with <= 8K context ("middle-out"); Glimpse trims itself.
# The context-compression plugin with enabled=false is the documented switch; the older
# `transforms` field is gone from OpenRouter's API schema (tests/test_openrouter_schema.py).
COMPRESSION_OFF: dict[str, Any] = {
    "plugins": [{"id": "context-compression", "enabled": False}],
}

ErrorKind = Literal[
    "auth",
    "credits",
    "forbidden",
    "bad_request",
    "rate_limited",
    "unavailable",
    "timeout",
    "stream_error",
    "bad_response",
]

USER_MESSAGES: dict[str, str] = {
    "auth": "The bot's OpenRouter key is invalid. An operator needs to fix it.",
    "credits": "The bot's OpenRouter account is out of credits.",
    "forbidden": "The request was flagged by the model's moderation.",
    "bad_request": "The model could not accept this request.",
    "rate_limited": "The model is getting too many requests right now. Please try again in a minute.",
    "unavailable": "The model is unavailable right now. Please try again shortly.",
    "timeout": "The model took too long to answer. Please try again.",
    "stream_error": "The model stopped partway through its answer. Please try again.",
    "bad_response": "The model sent a reply the bot could not read. Please try again.",
}

# Known listing of the default model (see DESIGN.md), used when GET /models cannot be read.
_KNOWN_MODELS: dict[str, tuple[float, float, float, tuple[str, ...]]] = {
    DEFAULT_MODEL: (0.8e-6, 1.6e-6, 0.005146, ("text", "image")),
}
_PERMANENT_STATUSES = frozenset({400, 401, 402, 403, 404, 410, 413, 422})
# Error codes that say the model itself is gone (retired, unlisted, no provider serves it). Only
# the numeric `code` and `message` are documented (docs/api/reference/errors); string codes and
# `metadata.availability.code` are read too in case OpenRouter or a gateway in front sends them.
_GONE_CODES = frozenset(
    {"model_not_found", "model_deprecated", "model_retired", "model_not_available", "no_endpoints"}
)
# A 404 whose message names a condition of the request or the account, not a missing model:
# "No endpoints found that support tool use", "… matching your data policy", "… that can handle …".
_NOT_GONE_404 = re.compile(r"that (support|can handle)|matching your|routing requirements", re.I)
_INVALID_MODEL_400 = re.compile(r"is not a valid model id", re.I)
_SECRET_PATTERN = re.compile(r"(sk-or-[A-Za-z0-9_\-]+|Bearer\s+\S+)")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What GET /models says about the configured model (prices in USD per token / per image)."""

    id: str
    context_length: int
    prompt_price: float
    completion_price: float
    image_price: float
    input_modalities: tuple[str, ...]
    from_api: bool
    expiration_date: str | None = None  # ISO date after which OpenRouter may remove the model

    @property
    def reads_images(self) -> bool:
        """Whether the model takes images (assumed when GET /models could not say)."""
        return not self.from_api or "image" in self.input_modalities


class TextDelta(NamedTuple):
    """A piece of the answer's text, in order (a tuple: made once per network read, cheaply)."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The answer finished: what it used and why it stopped."""

    usage: Usage
    finish_reason: str | None


class ModelError(Exception):
    """A model call failed: `kind` for code, `user_message` for chat users, `detail` for operators."""

    def __init__(
        self,
        kind: ErrorKind,
        detail: str,
        *,
        user_message: str | None = None,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
        model_gone: bool = False,
        suggested_models: tuple[str, ...] = (),
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind: ErrorKind = kind
        self.detail = detail
        self.user_message = user_message or USER_MESSAGES[kind]
        self.status = status
        self.code = code
        self.retryable = retryable
        self.model_gone = model_gone  # the model is retired or unknown: another one should answer
        self.suggested_models = suggested_models  # OpenRouter's suggested replacements, if any


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole (non-streamed) answer: its text, what it used and why it stopped."""

    text: str
    usage: Usage
    finish_reason: str | None


@dataclass
class _Progress:
    """What one streaming attempt has delivered so far."""

    text_yielded: bool = False
    finish_reason: str | None = None
    model: str = ""
    usage: dict[str, Any] | None = None


def build_extra_body(settings: Settings, model: str | None = None) -> dict[str, Any]:
    """OpenRouter-only request fields: compression off, provider preferences, fallback `models`."""
    primary = model or settings.model
    body: dict[str, Any] = {key: _copy(value) for key, value in COMPRESSION_OFF.items()}
    if settings.provider:
        body["provider"] = dict(settings.provider)
    fallbacks = [m for m in dict.fromkeys(settings.fallback_models) if m and m != primary]
    if fallbacks:
        body["models"] = [primary, *fallbacks]  # priority order, primary first
    return body


class OpenRouterClient:
    """One AsyncOpenAI client for the process, pointed at OpenRouter."""

    def __init__(self, settings: Settings, api_key: str, *, base_url: str | None = None) -> None:
        self._settings = settings
        self._api_key = api_key
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or settings.base_url,
            default_headers=_attribution_headers(settings),
            timeout=openai.Timeout(
                settings.request_timeout_seconds,
                connect=min(settings.request_timeout_seconds, CONNECT_TIMEOUT_SECONDS),
            ),
            max_retries=settings.max_retries,
            organization=None,
            project=None,
            # Glimpse's aiohttp transport (bot/transport.py): no timer or thread hop per read.
            http_client=httpx2.AsyncClient(transport=AiohttpTransport(), follow_redirects=True),
        )
        self._extra_body = build_extra_body(settings)
        # Absolute, so the SDK does not join it to the base URL for every request (~20 µs).
        self._chat_url = f"{self._client.base_url}chat/completions"
        self._infos: dict[str, tuple[ModelInfo, float]] = {}  # model -> (info, when read)
        self._info_lock = asyncio.Lock()
        self._listing: list[dict[str, Any]] | None = None  # GET /models entries, once read
        self._listing_at = -math.inf
        self._listing_error = ""  # why the last read failed ("" if it did not)
        self._listing_lock = asyncio.Lock()
        self._parsed: tuple[object, dict[str, ModelInfo]] = (None, {})  # (listing, its models)
        self._refreshing: asyncio.Task[None] | None = None  # a background re-read of GET /models

    # --- models ---

    async def model_info(self, model: str | None = None) -> ModelInfo:
        """A model's context and prices (default: the configured model); read once per model.

        A model GET /models did not describe is read again after MODEL_INFO_RETRY_SECONDS.
        `context_length` in the config overrides the configured model's context only.
        """
        model = model or self._settings.model
        async with self._info_lock:
            cached = self._infos.get(model)
            if cached is not None and (
                cached[0].from_api or time.monotonic() - cached[1] < MODEL_INFO_RETRY_SECONDS
            ):
                return cached[0]
            info = await self._fetch_model_info(model)
            if self._settings.context_length > 0 and model == self._settings.model:
                info = replace(info, context_length=self._settings.context_length)
            self._infos[model] = (info, time.monotonic())
            return info

    async def catalogue(self) -> dict[str, ModelInfo] | None:
        """Every model GET /models lists, by id (cached for an hour); None if it cannot be read."""
        entries = await self._models_listing()
        if entries is None:
            return None
        if self._parsed[0] is entries:
            return self._parsed[1]
        listed: dict[str, ModelInfo] = {}
        for entry in entries:
            model = entry.get("id")
            if not isinstance(model, str) or not model:
                continue
            try:
                listed[model] = _parse_model(entry, model)
            except (TypeError, ValueError, KeyError, AttributeError):
                continue  # a malformed entry is no model anyone can pick
        self._parsed = (entries, listed)
        return listed

    async def vision_models(self) -> list[str]:
        """Ids of the listed models that take images, sorted (empty if GET /models cannot be read)."""
        listed = await self.catalogue() or {}
        return sorted(model for model, info in listed.items() if "image" in info.input_modalities)

    async def _models_listing(self) -> list[dict[str, Any]] | None:
        """GET /models' entries: read once; re-read in the background after an hour (a failed read
        after MODEL_INFO_RETRY_SECONDS) while the listing read before keeps being used."""
        async with self._listing_lock:
            age = time.monotonic() - self._listing_at
            due = age >= (
                MODEL_INFO_RETRY_SECONDS if self._listing_error else CATALOGUE_TTL_SECONDS
            )
            if self._listing is None and due:  # nothing to answer with yet: read it now
                await self._read_listing()
            elif due and self._refreshing is None:
                self._listing_at = time.monotonic()
                self._refreshing = asyncio.create_task(self._refresh(), name="glimpse-models")
            return self._listing

    async def _refresh(self) -> None:
        try:
            async with self._listing_lock:
                await self._read_listing()
        finally:
            self._refreshing = None

    async def _read_listing(self) -> None:
        """GET /models into `_listing` (kept as it was if the read fails; `_listing_error` says why)."""
        timeout = min(self._settings.request_timeout_seconds, MODELS_TIMEOUT_SECONDS)
        self._listing_at = time.monotonic()
        try:
            body = await self._client.get(
                "/models",
                cast_to=object,
                options={"timeout": timeout, "headers": NO_SDK_TELEMETRY},
            )
        except openai.OpenAIError as exc:
            self._listing_error = f"GET /models failed ({self._error_from_sdk(exc).detail})"
            return
        entries = body.get("data") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            self._listing_error = "GET /models returned no `data` list"
            return
        self._listing = [entry for entry in entries if isinstance(entry, dict)]
        self._listing_error = ""

    async def _fetch_model_info(self, model: str) -> ModelInfo:
        entries = await self._models_listing()
        if entries is None:
            return self._fallback_info(model, self._listing_error or "GET /models failed")
        entry = _find_model(entries, model)
        if entry is None:
            return self._fallback_info(model, f"model {model!r} is not listed by GET /models")
        try:
            return _parse_model(entry, model)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            return self._fallback_info(
                model, f"GET /models entry for {model!r} is malformed ({exc})"
            )

    def _fallback_info(self, model: str, reason: str) -> ModelInfo:
        prompt, completion, image, modalities = _KNOWN_MODELS.get(
            model, (0.0, 0.0, 0.0, ("text", "image"))
        )
        if self._settings.context_length > 0 and model == self._settings.model:
            assumption = f"using context_length={self._settings.context_length} from the config"
        else:
            assumption = f"assuming a {FALLBACK_CONTEXT_TOKENS}-token context (set context_length to override)"
        logger.warning("%s; %s for %s", _redact(reason, self._api_key), assumption, model)
        return ModelInfo(
            model, FALLBACK_CONTEXT_TOKENS, prompt, completion, image, modalities, from_api=False
        )

    # --- key ---

    async def key_info(self) -> dict[str, Any]:
        """GET /key: the key's label, limit and usage (for `glimpse doctor`); raises ModelError."""
        try:
            body = await self._client.get(
                "/key", cast_to=object, options={"headers": NO_SDK_TELEMETRY}
            )
        except openai.OpenAIError as exc:
            raise self._logged(self._error_from_sdk(exc)) from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise self._logged(ModelError("bad_response", "GET /key returned no `data` object"))
        return data

    # --- chat ---

    async def stream(
        self, messages: list[dict[str, Any]], *, max_tokens: int, model: str | None = None
    ) -> AsyncGenerator[TextDelta | StreamEnd, None]:
        """Stream the answer of `model` (default: the configured one): TextDelta pieces, then one
        StreamEnd; raises ModelError.

        The SDK retries 408/409/429/5xx, timeouts and connection errors before the stream starts
        (honouring Retry-After). A failure inside the stream before any text is retried here a
        little more; once text has been yielded nothing is retried.
        """
        model = model or self._settings.model
        budget = min(self._settings.max_retries, EARLY_STREAM_RETRIES)
        attempt = 0
        while True:
            progress = _Progress(model=model)
            try:
                sdk_stream = await self._open_stream(messages, max_tokens, model)
                blocks, decoder = sdk_stream.blocks(), EventDecoder()
                request = sdk_stream.response.request
                try:
                    async for block in blocks:  # one network read: maybe several chunks
                        text, failure = _take(decoder, block, progress, request)
                        if text:
                            progress.text_yielded = True
                            yield TextDelta(text)
                        if failure is not None:
                            raise failure
                        if decoder.done:
                            await _drain(blocks, DRAIN_SECONDS)
                            break
                except (httpx2.TransportError, openai.APIError) as exc:  # APIError: an error chunk
                    raise self._error_in_stream(exc, progress, model) from None
                finally:
                    await sdk_stream.close()
                yield self._finish(progress)
                return
            except ModelError as error:
                if progress.text_yielded or not error.retryable or attempt >= budget:
                    raise self._logged(error, model) from None
                attempt += 1
                delay = _early_retry_delay(attempt)
                logger.info(
                    "retrying after %s before any text (attempt %d, in %.2fs)",
                    error.kind,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _open_stream(
        self, messages: list[dict[str, Any]], max_tokens: int, model: str
    ) -> _BodyStream:
        try:
            # The SDK signs, retries and maps HTTP errors; the body's events are decoded here, a
            # network read at a time (the SDK's per-event decoding was most of the CPU per token).
            return await self._client.post(
                self._chat_url,
                cast_to=bytes,
                body=self._chat_body(messages, max_tokens, model),
                options={"headers": NO_SDK_TELEMETRY},
                stream=True,
                stream_cls=_BodyStream,
            )
        except openai.OpenAIError as exc:  # the SDK already retried
            raise self._error_from_sdk(exc, retryable=False, model=model) from None

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        temperature: float | None = None,
        model: str | None = None,
    ) -> Completion:
        """One non-streamed chat completion (summaries); the SDK retries as for streams; raises ModelError."""
        model = model or self._settings.model
        body = self._chat_body(messages, max_tokens, model)
        body["stream"] = False
        del body["stream_options"]
        if temperature is not None:
            body["temperature"] = temperature
        try:
            response = await self._client.post(
                self._chat_url, cast_to=object, body=body, options={"headers": NO_SDK_TELEMETRY}
            )
        except openai.OpenAIError as exc:
            raise self._logged(self._error_from_sdk(exc, model=model), model) from None
        try:
            return self._completion(response, model)
        except ModelError as error:
            raise self._logged(error, model) from None

    def _completion(self, response: object, model: str) -> Completion:
        """A JSON chat completion read; an `error` object or a missing message raises ModelError."""
        if not isinstance(response, dict):
            raise ModelError("bad_response", "the completion is not a JSON object")
        if response.get("error"):
            error = response["error"]
            code, message = _error_fields(error, fallback="error in the completion")
            status = int(code) if code is not None and code.isdigit() else None
            detail = f"error in the completion: code={code} message={self._clean(message)}"
            if status is not None:
                raise self._status_error(status, error, message, detail, model=model)
            raise ModelError(
                "bad_response",
                detail,
                code=code,
                model_gone=_model_gone(None, error, message),
                suggested_models=_suggested(error),
            )
        choices = response.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        reply = choice.get("message") if isinstance(choice, dict) else None
        text = reply.get("content") if isinstance(reply, dict) else None
        if not isinstance(text, str) or not isinstance(choice, dict):
            raise ModelError("bad_response", "the completion has no message text")
        if choice.get("finish_reason") == "error":
            raise ModelError("stream_error", "the completion ended with finish_reason 'error'")
        reported = response.get("usage")
        usage: dict[str, Any] = reported if isinstance(reported, dict) else {}
        return Completion(
            text,
            Usage(
                model=str(response.get("model") or model),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                cost=float(usage.get("cost") or 0.0),
            ),
            choice.get("finish_reason"),
        )

    def _chat_body(
        self, messages: list[dict[str, Any]], max_tokens: int, model: str
    ) -> dict[str, Any]:
        """The streamed chat completion request, OpenRouter's own fields included."""
        extra = (
            self._extra_body
            if model == self._settings.model
            else build_extra_body(self._settings, model)
        )
        return {
            "model": model,
            "messages": messages,
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": self._settings.temperature,
            "stream_options": {"include_usage": True},
            **extra,
        }

    def _finish(self, progress: _Progress) -> StreamEnd:
        if progress.finish_reason == "error":
            raise ModelError(
                "stream_error", "stream ended with finish_reason 'error'", retryable=True
            )
        if progress.finish_reason is None and progress.usage is None:
            raise ModelError(
                "stream_error", "stream ended before the model finished", retryable=True
            )
        usage = progress.usage or {}
        return StreamEnd(
            Usage(
                model=progress.model,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                cost=float(usage.get("cost") or 0.0),
            ),
            progress.finish_reason,
        )

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refreshing
        await self._client.close()

    # --- errors ---

    def _error_in_stream(
        self, exc: httpx2.TransportError | openai.APIError, progress: _Progress, model: str
    ) -> ModelError:
        """A failure after the HTTP 200: OpenRouter's error chunk, a cut connection or a stalled read."""
        if isinstance(exc, httpx2.TimeoutException):
            return ModelError(
                "timeout", "no data from OpenRouter within the read timeout", retryable=True
            )
        if isinstance(exc, httpx2.TransportError):
            return ModelError(
                "stream_error", f"connection lost mid-stream: {_cause(exc)}", retryable=True
            )
        code, message = _error_fields(exc.body, fallback=exc.message)
        status = int(code) if code is not None and code.isdigit() else None
        detail = f"error chunk mid-stream: code={code} message={self._clean(message)}"
        if progress.text_yielded or status is None or status not in _PERMANENT_STATUSES:
            kind: ErrorKind = "stream_error"
            if not progress.text_yielded and status is not None:
                kind = _kind_for_status(status)
            gone = not progress.text_yielded and _model_gone(status, exc.body, message)
            return ModelError(
                kind, detail, status=status, code=code, retryable=not gone, model_gone=gone
            )
        return self._status_error(status, exc.body, message, detail, model=model)

    def _error_from_sdk(
        self, exc: openai.OpenAIError, *, retryable: bool = False, model: str | None = None
    ) -> ModelError:
        if isinstance(exc, openai.APITimeoutError):
            return ModelError(
                "timeout", "OpenRouter did not answer within the timeout", retryable=retryable
            )
        if isinstance(exc, openai.APIConnectionError):
            return ModelError(
                "unavailable", f"cannot reach OpenRouter: {_cause(exc)}", retryable=retryable
            )
        if isinstance(exc, openai.APIResponseValidationError):
            return ModelError(
                "bad_response", "OpenRouter's response did not match the expected shape"
            )
        if isinstance(exc, openai.APIStatusError):
            code, message = _error_fields(exc.body, fallback=exc.message)
            detail = f"HTTP {exc.status_code} code={code} message={self._clean(message)}"
            return self._status_error(
                exc.status_code, exc.body, message, detail, retryable=retryable, model=model
            )
        if isinstance(exc, openai.APIError):
            code, message = _error_fields(exc.body, fallback=exc.message)
            return ModelError(
                "bad_response", f"code={code} message={self._clean(message)}", code=code
            )
        return ModelError("bad_response", f"{type(exc).__name__}: {self._clean(str(exc))}")

    def _status_error(
        self,
        status: int,
        body: object,
        message: str,
        detail: str,
        *,
        retryable: bool = False,
        model: str | None = None,
    ) -> ModelError:
        """The ModelError for an HTTP status and OpenRouter's error body (`{code, message, metadata}`)."""
        kind = _kind_for_status(status)
        code = _error_fields(body, fallback=message)[0]
        gone = _model_gone(status, body, message)
        user_message = None
        if gone or status == 404:
            user_message = (
                f"The model {model or self._settings.model} is not available on OpenRouter."
            )
        elif kind == "bad_request":
            shown = _shareable(self._clean(message))
            user_message = f"The model could not accept this request: {shown}" if shown else None
        return ModelError(
            kind,
            detail,
            user_message=user_message,
            status=status,
            code=code,
            retryable=retryable,
            model_gone=gone,
            suggested_models=_suggested(body),
        )

    def _clean(self, text: str) -> str:
        return _redact(" ".join(str(text).split()), self._api_key)[:LOG_DETAIL_MAX_CHARS]

    def _logged(self, error: ModelError, model: str | None = None) -> ModelError:
        # A gone model is the caller's to report (bot/models/health.py: one line, with what next).
        logger.log(
            logging.INFO if error.model_gone else logging.WARNING,
            "OpenRouter call failed: kind=%s status=%s code=%s model=%s detail=%s",
            error.kind,
            error.status,
            error.code,
            model or self._settings.model,
            _redact(error.detail, self._api_key),
        )
        return error


class _BodyStream(openai.AsyncStream[bytes]):
    """A streamed response the SDK hands over unparsed (its `stream_cls`); `blocks` reads the body."""

    async def __stream__(self) -> AsyncIterator[bytes]:
        async for block in self.blocks():  # the SDK's way in; Glimpse calls `blocks` itself
            yield block

    def blocks(self) -> AsyncIterator[bytes]:
        """The body a network read at a time; raises httpx2's transport errors.

        Uncompressed, it comes straight from Glimpse's transport (no httpx2 or SDK generator
        steps per read); compressed, through httpx2's decoder.
        """
        response = self.response
        body = response.extensions.get(RESPONSE_BODY)
        encoding = response.headers.get("content-encoding", "identity").lower()
        if isinstance(body, ResponseBody) and encoding == "identity":
            return aiter(body)
        return response.aiter_bytes()


async def _drain(blocks: AsyncIterator[bytes], seconds: float) -> None:
    """Read what follows `data: [DONE]` for at most `seconds` (so HTTP/1.1 reuses the connection)."""
    with contextlib.suppress(TimeoutError, httpx2.TransportError):
        async with asyncio.timeout(seconds):
            async for _ in blocks:
                pass


def _take(
    decoder: EventDecoder, block: bytes, progress: _Progress, request: httpx2.Request
) -> tuple[str, Exception | None]:
    """The text of the chunks one read completed, and the failure that ended the stream there.

    Text that arrived before an error chunk or an unreadable chunk is returned with it, never lost.
    """
    texts: list[str] = []
    for data in decoder.feed(block):
        try:
            chunk = decode_chunk(data)
        except UNREADABLE_CHUNK as exc:
            error = ModelError("bad_response", f"unreadable stream chunk: {exc}", retryable=True)
            return "".join(texts), error
        if chunk.error:
            return "".join(texts), _error_chunk(chunk.error, request)
        if chunk.model:
            progress.model = chunk.model
        if chunk.usage is not None:
            progress.usage = chunk.usage
        for choice in chunk.choices or ():
            if choice.delta is not None and choice.delta.content:
                texts.append(choice.delta.content)
            if choice.finish_reason:
                progress.finish_reason = choice.finish_reason
    return "".join(texts), None


def _error_chunk(error: Any, request: httpx2.Request) -> openai.APIError:
    """OpenRouter's mid-stream error chunk as the SDK would raise it."""
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return openai.APIError(message, request, body=error)


# The openai SDK's telemetry headers, omitted from every request: they are for OpenAI's servers,
# OpenRouter does not read them, and they would tell a third party the host's OS, CPU and Python.
# Without them a request is also ~30 µs lighter to build, which counts when many start at once.
NO_SDK_TELEMETRY: dict[str, str | openai.Omit] = {
    name: openai.Omit()
    for name in (
        "X-Stainless-Lang",
        "X-Stainless-Package-Version",
        "X-Stainless-OS",
        "X-Stainless-Arch",
        "X-Stainless-Runtime",
        "X-Stainless-Runtime-Version",
        "X-Stainless-Async",
        "X-Stainless-Retry-Count",
        "X-Stainless-Read-Timeout",
    )
}


def _attribution_headers(settings: Settings) -> dict[str, str]:
    headers = {"HTTP-Referer": settings.http_referer, "X-Title": settings.app_title}
    return {name: value for name, value in headers.items() if value}


def _kind_for_status(status: int) -> ErrorKind:
    kinds: dict[int, ErrorKind] = {
        401: "auth",
        402: "credits",
        403: "forbidden",
        408: "timeout",
        429: "rate_limited",
    }
    if status in kinds:
        return kinds[status]
    if status >= 500 or status == 409:
        return "unavailable"
    return "bad_request"


def _error_fields(body: object, *, fallback: str) -> tuple[str | None, str]:
    """OpenRouter's error `code` (as text) and `message` from an SDK error body."""
    if isinstance(body, dict):
        code = body.get("code")
        message = body.get("message")
        return (str(code) if code is not None else None), (
            message if isinstance(message, str) else fallback
        )
    return None, fallback


def _shareable(message: str) -> str:
    """OpenRouter's message if short and plain enough to show chat users, else ''."""
    if not message or len(message) > USER_DETAIL_MAX_CHARS or "[redacted]" in message:
        return ""
    if any(mark in message for mark in ("{", "}", "http://", "https://", "Traceback")):
        return ""
    return message if message.endswith((".", "!", "?")) else f"{message}."


def _redact(text: str, api_key: str) -> str:
    if api_key:
        text = text.replace(api_key, "[redacted]")
    return _SECRET_PATTERN.sub("[redacted]", text)


def _cause(exc: BaseException) -> str:
    causes = _causes(exc)
    return type(causes[-1]).__name__ if causes else type(exc).__name__


def _causes(exc: BaseException) -> list[BaseException]:
    """The exceptions behind `exc`, outermost first (a chain of at most a few links)."""
    chain: list[BaseException] = []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


def _early_retry_delay(attempt: int) -> float:
    delay = min(EARLY_RETRY_BASE_DELAY_SECONDS * 2 ** (attempt - 1), EARLY_RETRY_MAX_DELAY_SECONDS)
    return delay * (1 - 0.25 * random.random())


def _model_gone(status: int | None, body: object, message: str) -> bool:
    """Whether an error says the model itself is gone (retired, unknown, served by no provider).

    A 410; a 404 unless its message names a condition of the request ("No endpoints found that
    support tool use", "… matching your data policy"); a 400 "X is not a valid model ID"; or an
    error code (or `metadata.availability.code`) such as `model_not_found` or `no_endpoints`.
    """
    if status == 410:
        return True
    if status == 404 and not _NOT_GONE_404.search(message):
        return True
    if status == 400 and _INVALID_MODEL_400.search(message):
        return True
    return bool(_codes(body) & _GONE_CODES)


def _codes(body: object) -> set[str]:
    """The string codes an error body carries: `code`, and `availability.code` in it or its metadata."""
    if not isinstance(body, dict):
        return set()
    codes = {body.get("code")}
    for holder in (body, body.get("metadata")):
        availability = holder.get("availability") if isinstance(holder, dict) else None
        if isinstance(availability, dict):
            codes.add(availability.get("code"))
    return {code.lower() for code in codes if isinstance(code, str)}


def _suggested(body: object) -> tuple[str, ...]:
    """Replacement model ids an error body suggests (`fallback_models`, top level or in metadata)."""
    if not isinstance(body, dict):
        return ()
    for holder in (body, body.get("metadata")):
        listed = holder.get("fallback_models") if isinstance(holder, dict) else None
        if isinstance(listed, list):
            return tuple(m for m in listed if isinstance(m, str) and m)
    return ()


def _find_model(entries: list[dict[str, Any]], model: str) -> dict[str, Any] | None:
    """The GET /models entry for `model` (variant suffixes such as ":nitro" fall back to the base id)."""
    wanted = [model] + ([model.split(":", 1)[0]] if ":" in model else [])
    for candidate in wanted:
        for entry in entries:
            if isinstance(entry, dict) and candidate in (
                entry.get("id"),
                entry.get("canonical_slug"),
            ):
                return entry
    return None


def _parse_model(entry: dict[str, Any], model: str) -> ModelInfo:
    pricing = entry.get("pricing") or {}
    architecture = entry.get("architecture") or {}
    context = int(
        entry.get("context_length") or (entry.get("top_provider") or {}).get("context_length") or 0
    )
    if context <= 0:
        raise ValueError("no context_length")
    return ModelInfo(
        id=model,
        context_length=context,
        prompt_price=_price(pricing.get("prompt")),
        completion_price=_price(pricing.get("completion")),
        image_price=_price(pricing.get("image")),
        input_modalities=_modalities(architecture),
        from_api=True,
        expiration_date=_date(entry.get("expiration_date")),
    )


def _date(value: object) -> str | None:
    """An ISO date (YYYY-MM-DD, any time part dropped) or None."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ].*)?", value):
        return None
    return value[:10]


def _price(value: object) -> float:
    """A price string in USD; missing or negative (variable pricing) counts as 0."""
    if value in (None, ""):
        return 0.0
    price = float(value)  # type: ignore[arg-type]
    return price if price > 0 else 0.0


def _modalities(architecture: dict[str, Any]) -> tuple[str, ...]:
    listed = architecture.get("input_modalities")
    if isinstance(listed, list) and listed:
        return tuple(str(m) for m in listed)
    modality = str(architecture.get("modality") or "text->text")
    return tuple(modality.split("->", 1)[0].split("+"))


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))
