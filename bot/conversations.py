"""The one entry point adapters call: a message and a sink in, a streamed, remembered answer out."""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace

from bot.access import REFUSAL, AccessPolicy
from bot.admission import BUSY_NOTICE, Admission, Busy
from bot.attachments import (
    AttachmentPipeline,
    FileFitter,
    FileText,
    PreparedAttachments,
    file_room,
    with_blocks,
)
from bot.budgets import Budgets
from bot.config import Settings
from bot.context import (
    MIN_USER_TEXT_TOKENS,
    ContextBuilder,
    ContextError,
    ModelRequest,
    system_text,
)
from bot.feedback import Feedback, offer_rating
from bot.health import Readiness
from bot.images import ImagePipeline
from bot.images.errors import display_name
from bot.inbox import CatchUp, Inbox, InboxEntry, Ticket
from bot.leases import Leases, LocalLeases
from bot.ledger import Ledger
from bot.ledger_memory import MemoryLedger
from bot.memory import SPEAKERS_NOTE, Summarizer, TurnMaker, forwarded_text
from bot.messages import (
    ConversationKey,
    FileRef,
    ImageRef,
    IncomingMessage,
    QuotedMessage,
    ReplySink,
)
from bot.metrics import Metrics
from bot.models import ModelChoice, ModelCommands, Models
from bot.openrouter import ModelError, OpenRouterClient, StreamEnd, TextDelta
from bot.ratelimit import RateLimiter, SlidingWindowLimiter
from bot.shutdown import Gate
from bot.store import Store, StoreError
from bot.tokens import TokenCounter
from bot.turns import PreparedImage, Summary, Turn, Usage

__all__ = ["Conversations", "Outcome", "Status"]

log = logging.getLogger("glimpse.conversations")

DEDUP_TTL_SECONDS = 24 * 3600
LOCAL_CLAIMS = 10_000  # ids this process remembers itself, for dedup while the store is down
PRUNE_INTERVAL_SECONDS = 3600
DEFAULT_IMAGE_QUESTION = "What is in this image?"
DEFAULT_QUOTE_QUESTION = "What can you tell me about this message?"
DEFAULT_FILE_QUESTION = "What can you tell me about this file?"
EMPTY_MESSAGE_HINT = "Ask me a question, or attach an image and I'll tell you what I see."
MEMORY_DOWN_NOTE = (
    "I can't reach my memory right now, so I'm answering without our earlier messages."
)
NOT_SAVED_NOTE = "I couldn't save this exchange, so I may not remember it later."
SHORTENED_NOTE = "Your message was too long for the model, so I read only its first part."
LENGTH_NOTE = "_(The answer reached its length limit and stops here.)_"
CUT_OFF_NOTE = "_(The answer was cut off here.)_"  # stored after an answer stopped mid-stream
EMPTY_ANSWER = "The model sent back an empty answer. Please try again."
NO_ROOM = (
    "The bot's settings leave no room for a question to the model. An operator needs to fix them."
)
INTERNAL_ERROR = "Something went wrong on my side and I couldn't answer. Please try again."
DRAINING_NOTICE = "Glimpse is restarting; please try again in a moment."


class Status(enum.Enum):
    """How a message ended."""

    ANSWERED = "answered"
    DUPLICATE = "duplicate"
    DENIED = "denied"
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"  # nothing usable in the message (empty, every image refused)
    FAILED = "failed"  # the model or the bot failed; the user was told
    OVER_BUDGET = "over_budget"  # today's budget of the user, channel or workspace is spent
    DRAINING = "draining"  # the process is shutting down; the user was asked to try again
    BUSY = "busy"  # no model-call slot freed up in time; the user was asked to try again


@dataclass(frozen=True, slots=True)
class _Memory:
    """What a request was built from: the stored turns, their summary, the system prompt without it."""

    history: list[Turn]
    summary: Summary | None
    system: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one message, for the adapter, the CLI's exit code and metrics."""

    status: Status
    text: str = ""
    usage: Usage | None = None
    request: ModelRequest | None = None
    first_token_seconds: float | None = None


class Conversations:
    """dedup → access → rate limit → images → memory → budget → model → sink → store."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        client: OpenRouterClient,
        images: ImagePipeline,
        attachments: AttachmentPipeline | None = None,
        counter: TokenCounter | None = None,
        limiter: RateLimiter | None = None,
        leases: Leases | None = None,
        ledger: Ledger | None = None,
        metrics: Metrics | None = None,
        inbox: Inbox | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._client = client
        self._images = images
        self._attachments = attachments or AttachmentPipeline(settings, images)
        self._counter = counter or TokenCounter()
        self._limiter = limiter or SlidingWindowLimiter(settings.user_messages_per_minute)
        self._access = AccessPolicy(settings)
        self._leases: Leases = leases if leases is not None else LocalLeases()
        self._maintenance: asyncio.Task[None] | None = None
        self._budgets = Budgets(settings, ledger if ledger is not None else MemoryLedger())
        self._turns = TurnMaker(self._counter)
        self._gate = Gate()
        self._local_claims: OrderedDict[str, None] = OrderedDict()
        self.admission = Admission(
            settings.max_concurrent_answers, busy_after_seconds=settings.busy_after_seconds
        )
        self.metrics = metrics if metrics is not None else Metrics()
        self.feedback = Feedback(self._budgets.ledger, self.metrics)  # rating buttons' clicks
        self._models = Models(
            settings, store=store, client=client, counter=self._counter, metrics=self.metrics
        )
        self._model_commands = ModelCommands(settings, self._models)
        self.readiness = Readiness()  # adapters report: readiness.set("slack", True)
        # Adapters that can answer a message again register with it (inbox.register).
        self.inbox = inbox if inbox is not None else Inbox(store, settings.inbox, shared=False)
        self.catch_up = CatchUp(store, settings.catch_up)  # adapters run it after downtime
        self._summaries = Summarizer(
            store=store,
            client=client,
            counter=self._counter,
            budgets=self._budgets,
            metrics=self.metrics,
            share=settings.summary_share,
        )

    # --- life cycle ---

    async def start(self) -> None:
        """Open the store, learn the model's context length, and start pruning old turns."""
        await self._store.open()
        await self._open_ledger()
        self._check_room(await self._ensure_builder())
        await self._models.warn_at_start()
        if self._settings.retention_days and self._maintenance is None:
            self._maintenance = asyncio.create_task(self._prune_forever(), name="glimpse-prune")
        self.inbox.start(self._answer_again)

    async def close(self) -> None:
        await self.inbox.close()
        await self._summaries.close()
        if self._maintenance is not None:
            self._maintenance.cancel()
            self._maintenance = None
        await self._attachments.close()
        await self._images.close()
        await self._client.close()
        await self._store.close()
        await self._budgets.ledger.close()

    # --- what adapters call ---

    async def handle(self, message: IncomingMessage, sink: ReplySink) -> Outcome:
        """Answer one message into its sink; never raises for bad input, model or store trouble."""
        started = time.perf_counter()
        if not self._gate.enter():
            outcome = await self._refuse_while_draining(message, sink)
        else:
            try:
                with self.metrics.waiting():
                    outcome = await self._handle(message, sink)
            finally:
                self._gate.leave()
        self.metrics.observe(message.key.platform, outcome, time.perf_counter() - started)
        return outcome

    async def _handle(self, message: IncomingMessage, sink: ReplySink) -> Outcome:
        # Queue on the conversation before anything awaits, so one thread's messages keep their order;
        # the inbox records the message meanwhile, so a crash while it waits does not lose it.
        async with self.inbox.receiving(message) as ticket, self._conversation_lock(message.key):
            try:
                with self.metrics.answering():
                    return await self._admit_and_answer(message, sink, ticket)
            except Exception:
                log.exception("failed to handle message %s in %s", message.message_id, message.key)
                await _tell(sink, INTERNAL_ERROR)
                return Outcome(Status.FAILED, INTERNAL_ERROR)

    async def reset(self, key: ConversationKey) -> bool:
        """Forget a conversation (its turns and summary); False if the store could not be reached."""
        self._summaries.forget(key)
        try:
            await self._store.reset(key)
        except StoreError as exc:
            log.warning("could not reset %s: %s", key, exc)
            return False
        return True

    async def is_active(self, key: ConversationKey) -> bool:
        """Whether the bot remembers anything in this conversation (a thread it has answered in)."""
        try:
            return bool(await self._store.load(key, 1))
        except StoreError as exc:
            log.warning("could not read %s: %s", key, exc)
            return False

    # --- a channel's model (/model) ---

    async def set_channel_model(
        self,
        platform: str,
        workspace: str,
        channel: str,
        model: str | None,
        *,
        user_id: str,
        is_manager: bool = False,
    ) -> str:
        """Set a channel's model for every process (None or "": back to the configured one).

        `channel` is the channel itself (a thread's parent); `user_id` must be in `admins`, or
        `is_manager` True (the platform says the user manages the workspace). Allowed models:
        those OpenRouter lists that read images. Returns the sentence to show; never raises.
        """
        return await self._model_commands.set(
            platform, workspace, channel, model, user_id=user_id, is_manager=is_manager
        )

    async def channel_model(self, platform: str, workspace: str, channel: str) -> str:
        """The id of the model answering in the channel now (a thread: pass its parent)."""
        return await self._model_commands.current(platform, workspace, channel)

    async def describe_channel_model(self, platform: str, workspace: str, channel: str) -> str:
        """A sentence for the user: the channel's model and where it was chosen."""
        return await self._model_commands.describe(platform, workspace, channel)

    async def vision_models(self) -> list[str]:
        """Ids a channel's model may be set to (GET /models, image input), sorted; [] if unknown."""
        return await self._model_commands.vision_models()

    # --- operations ---

    @property
    def draining(self) -> bool:
        """True once `drain` was called: new messages get DRAINING_NOTICE and no answer."""
        return self._gate.closed

    async def drain(self, timeout_seconds: float) -> int:
        """Refuse new messages and wait for those in flight; return how many did not finish."""
        log.info(
            "draining: waiting up to %g s for %d answers", timeout_seconds, self._gate.in_flight
        )
        left = await self._gate.drain(timeout_seconds)
        if left:
            log.warning(
                "%d answers still running after %g s; stopping anyway", left, timeout_seconds
            )
        return left

    async def ping_store(self) -> None:
        """Raise StoreError if the memory store cannot be used right now."""
        await self._store.ping()

    async def idle(self) -> None:
        """Wait for the background work answers leave behind (summaries) to finish."""
        await self._summaries.idle()

    # --- the pipeline ---

    async def _admit_and_answer(
        self, message: IncomingMessage, sink: ReplySink, ticket: Ticket | None
    ) -> Outcome:
        if not await self._claim(message):
            log.info("duplicate message %s in %s ignored", message.message_id, message.key)
            return Outcome(Status.DUPLICATE)
        await self.inbox.resume_earlier(message)  # a dead process's earlier message goes first
        async with self.inbox.tracking(sink, ticket) as tracked:
            return await self._check_and_answer(message, tracked)

    async def _answer_again(
        self, message: IncomingMessage, sink: ReplySink, entry: InboxEntry, locked: bool
    ) -> None:
        """A message a crash left unanswered (the inbox took it over), answered in conversation order
        (`locked`: the caller holds the conversation already)."""
        if not self._gate.enter():
            return  # shutting down: the entry stays open for the next attempt
        try:
            async with AsyncExitStack() as stack:
                if not locked:
                    await stack.enter_async_context(self._conversation_lock(message.key))
                await self._claim(message)  # a later delivery of it is a duplicate
                async with self.inbox.tracking(sink, resumed=entry) as tracked:
                    # Recorded as it arrived, perhaps before the access rules saw it.
                    if self._access.refusal(message) is not None:
                        log.info("not answering %s again: refused", message.message_id)
                        return
                    outcome = await self._answer(message, tracked)
            log.info("answered %s again: %s", message.message_id, outcome.status.value)
        finally:
            self._gate.leave()

    async def _check_and_answer(self, message: IncomingMessage, sink: ReplySink) -> Outcome:
        refusal = self._access.refusal(message)
        if refusal is not None:
            log.info("refused message %s: %s", message.message_id, refusal)
            if not self._settings.silent_refusals:
                await sink.notice(REFUSAL)
            return Outcome(Status.DENIED, REFUSAL)
        wait = await self._limiter.hit(f"{message.key.platform}:{message.author_id}")
        if wait is not None:
            text = f"You're sending messages faster than I can answer. Try again in {math.ceil(wait)} s."
            await sink.notice(text)
            return Outcome(Status.RATE_LIMITED, text)
        over_budget = await self._budgets.refusal(message)
        if over_budget is not None:
            await sink.notice(over_budget)
            return Outcome(Status.OVER_BUDGET, over_budget)
        return await self._answer(message, sink)

    async def _answer(self, message: IncomingMessage, sink: ReplySink) -> Outcome:
        notes: list[str] = []
        if message.other_files:
            notes.append(f"I can only read images, so I skipped {_names(message.other_files)}.")
        images, replies, files = await self._prepare_images(message, notes)
        text = forwarded_text(_readable(message.text), message)
        if not text and not images and not replies and not files[-1]:
            reply = " ".join(notes) if notes else EMPTY_MESSAGE_HINT
            await sink.notice(reply)
            return Outcome(Status.REJECTED, reply)
        if not text:
            text = (
                DEFAULT_IMAGE_QUESTION
                if images
                else DEFAULT_FILE_QUESTION
                if files[-1]
                else DEFAULT_QUOTE_QUESTION
            )

        memory = await self._load_memory(message, notes)
        known = {turn.message_id for turn in memory.history if turn.message_id}
        new_turns = self._turns.user_turns(message, text, images, replies, known_ids=known)
        builder = await self._ensure_builder(message)
        if any(files):  # now that the room is known: each file's text, shortened to its share
            held = [quote.message_id in known for quote, _ in replies]  # already remembered
            files = [() if old else f for old, f in zip(held, files[:-1], strict=True)] + files[-1:]
            *quoted, own = await self._fit_files(builder, memory, new_turns, files, notes)
            text = with_blocks(text, own)
            new_turns = self._turns.user_turns(
                message, text, images, replies, known_ids=known, reply_files=quoted
            )
        try:
            request = builder.build(
                memory.system,
                [*memory.history, *new_turns[:-1]],
                new_turns[-1],
                summary=self._summaries.fits(memory.summary, builder),
            )
        except ContextError as exc:
            log.error("cannot build a request for %s: %s", message.key, exc)
            await sink.notice(NO_ROOM)
            return Outcome(Status.FAILED, NO_ROOM)
        if request.user_text_shortened:
            notes.append(SHORTENED_NOTE)
        if notes:
            await sink.notice(" ".join(notes))
        return await self._stream(message, sink, request, new_turns, memory)

    async def _stream(
        self,
        message: IncomingMessage,
        sink: ReplySink,
        request: ModelRequest,
        new_turns: list[Turn],
        memory: _Memory,
    ) -> Outcome:
        # The platform's "working" signal (a reaction, a thread, typing) goes out beside the model
        # request instead of before it, so its round trip is not added to every answer; the sink
        # is used again only once it has landed.
        starting: asyncio.Task[None] | None = asyncio.create_task(sink.start())
        started = time.perf_counter()
        first_token: float | None = None
        answer = ""
        end: StreamEnd | None = None
        try:
            try:
                async with self.admission.slot():  # a bounded number of model calls at once
                    async for event in self._models.stream(
                        request.messages,
                        max_tokens=self._settings.max_output_tokens,
                        model=request.model,
                    ):
                        if isinstance(event, TextDelta):
                            if first_token is None:
                                first_token = time.perf_counter() - started
                            if starting is not None:
                                await starting
                                starting = None
                            answer += event.text
                            await sink.update(answer)
                        else:
                            end = event
            finally:
                if starting is not None:  # every way on uses the sink (or fails its start)
                    await starting
        except asyncio.CancelledError:  # the adapter stopped the answer (Ctrl-C) or shutdown did
            await self._remember_cut_off(message, sink, request, new_turns, answer)
            raise
        except Busy:
            log.info("busy: message %s in %s not answered", message.message_id, message.key)
            await sink.fail(BUSY_NOTICE)
            return Outcome(Status.BUSY, BUSY_NOTICE, request=request)
        except ModelError as exc:
            log.info(  # the client already logged the error itself; this ties it to the message
                "model error for %s in %s: %s (%s)",
                message.message_id,
                message.key,
                exc.kind,
                exc.detail,
            )
            final = (
                f"{answer}\n\n⚠️ The answer was cut off: {exc.user_message}"
                if answer
                else f"⚠️ {exc.user_message}"
            )
            await sink.fail(final)
            return Outcome(Status.FAILED, final, request=request, first_token_seconds=first_token)
        if not answer.strip():
            await sink.fail(EMPTY_ANSWER)
            return Outcome(
                Status.FAILED, EMPTY_ANSWER, request=request, first_token_seconds=first_token
            )
        usage = end.usage if end is not None else None
        final = (
            f"{answer}\n\n{LENGTH_NOTE}"
            if end is not None and end.finish_reason == "length"
            else answer
        )
        offer_rating(sink, usage.model if usage else request.model or self._settings.model)
        await sink.finish(final)
        turns = [
            *self._turns.with_captions(new_turns, answer, request.images),
            self._turns.assistant_turn(answer, usage),
        ]
        if usage is not None:
            await self._budgets.record(message, usage, len(request.images))
            self._models.check_count(request, usage)
        if await self._remember(message.key, turns, sink) and self._settings.summaries:
            builder = await self._ensure_builder(message)
            self._summaries.consider(
                message, builder, memory.system, [*memory.history, *turns], memory.summary
            )
        log.info(
            "answered %s in %s: %d/%d prompt tokens counted/billed, %d completion, $%.6f, %d images, "
            "%d older turns kept (%d dropped, %d summarised), first token %.2f s, total %.2f s",
            message.message_id,
            message.key,
            request.prompt_tokens,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            usage.cost if usage else 0.0,
            len(request.images),
            request.history_turns,
            request.history_dropped,
            request.history_summarised,
            first_token or 0.0,
            time.perf_counter() - started,
        )
        return Outcome(
            Status.ANSWERED, final, usage=usage, request=request, first_token_seconds=first_token
        )

    # --- steps ---

    async def _claim(self, message: IncomingMessage) -> bool:
        event_id = f"{message.key.platform}:{message.key.workspace}:{message.message_id}"
        seen_here = event_id in self._local_claims
        self._local_claims[event_id] = None
        while len(self._local_claims) > LOCAL_CLAIMS:
            self._local_claims.popitem(last=False)
        try:
            return await self._store.claim(event_id, DEDUP_TTL_SECONDS)
        except StoreError as exc:  # a platform's second delivery must not be answered twice
            log.warning(
                "dedup unavailable (%s); %s checked in this process only", exc, message.message_id
            )
            return not seen_here

    async def _prepare_images(
        self, message: IncomingMessage, notes: list[str]
    ) -> tuple[
        tuple[PreparedImage, ...],
        list[tuple[QuotedMessage, tuple[PreparedImage, ...]]],
        list[tuple[FileText, ...]],
    ]:
        """The message's own images (with those it forwards), each quoted reply with its images,
        and the texts of the files of each of those turns (the replies', then the message's)."""
        forwards = [q for q in message.quoted if q.kind == "forward"]
        replies = [q for q in message.quoted if q.kind == "reply"]
        choice = await self._models.choose(message)
        own, *quoted = await asyncio.gather(
            self._prepare(
                message.images + tuple(ref for q in forwards for ref in q.images),
                message.files + tuple(ref for q in forwards for ref in q.files),
                notes,
                choice,
            ),
            *(self._prepare(quote.images, quote.files, notes, choice) for quote in replies),
        )
        kept = [
            (quote, batch)
            for quote, batch in zip(replies, quoted, strict=True)
            if batch.images or batch.texts or quote.text.strip()
        ]
        files = [batch.texts for _, batch in kept] + [own.texts]
        return own.images, [(quote, batch.images) for quote, batch in kept], files

    async def _prepare(
        self,
        images: tuple[ImageRef, ...],
        files: tuple[FileRef, ...],
        notes: list[str],
        choice: ModelChoice,
    ) -> PreparedAttachments:
        if images and not choice.reads_images:
            images = _ignore_images(notes, choice.model)
        if not images and not files:
            return PreparedAttachments((), (), ())
        batch = await self._attachments.prepare(images, files)
        notes.extend(batch.refusals)
        refs = len(images) + len(files)
        self.metrics.image_results(refs - len(batch.refusals), len(batch.refusals))
        if batch.images and not choice.reads_images:  # a file that was an image after all
            return replace(batch, images=_ignore_images(notes, choice.model))
        return batch

    async def _fit_files(
        self,
        builder: ContextBuilder,
        memory: _Memory,
        bare: list[Turn],
        groups: list[tuple[FileText, ...]],
        notes: list[str],
    ) -> tuple[str, ...]:
        """Each turn's files as fenced blocks, shortened to their share of the room `bare` leaves."""
        system = system_text(memory.system, self._summaries.fits(memory.summary, builder))
        room = file_room(
            builder,
            system,
            bare,
            memory.history,
            image_tokens=self._settings.image_prompt_tokens,
            files=sum(map(len, groups)),
        )
        fitted = await asyncio.to_thread(FileFitter(builder.counter).fit, groups, room)
        notes.extend(fitted.notices)
        return fitted.blocks

    async def _load_memory(self, message: IncomingMessage, notes: list[str]) -> _Memory:
        """The stored turns, the summary of older ones, and the system prompt for this message."""
        key = message.key
        system = self._settings.system_prompt_for(message.parent_channel or key.channel)
        if message.shared:
            system += SPEAKERS_NOTE
        history = await self._load_history(key, notes)
        summary = None
        if self._settings.summaries and history:
            try:
                summary = await self._store.load_summary(key)
            except StoreError as exc:
                log.warning("could not load the summary of %s: %s", key, exc)
        return _Memory(history, summary, system)

    async def _load_history(self, key: ConversationKey, notes: list[str]) -> list[Turn]:
        try:
            return await self._store.load(key, self._settings.history_turns)
        except StoreError as exc:
            log.warning("could not load memory of %s: %s", key, exc)
            notes.append(MEMORY_DOWN_NOTE)
            return []

    async def _remember(self, key: ConversationKey, turns: Sequence[Turn], sink: ReplySink) -> bool:
        try:
            await self._store.append(key, turns)
        except StoreError as exc:
            log.warning("could not store turns of %s: %s", key, exc)
            await _tell(sink, NOT_SAVED_NOTE)
            return False
        return True

    async def _remember_cut_off(
        self,
        message: IncomingMessage,
        sink: ReplySink,
        request: ModelRequest,
        new_turns: list[Turn],
        answer: str,
    ) -> None:
        """Keep what arrived of a cancelled answer, marked as cut off; nothing if nothing arrived."""
        if not answer.strip():
            return
        log.info("answer to %s in %s cut off mid-stream", message.message_id, message.key)
        turns = [
            *self._turns.with_captions(new_turns, answer, request.images),
            self._turns.assistant_turn(f"{answer}\n\n{CUT_OFF_NOTE}", None),
        ]
        await self._remember(message.key, turns, sink)

    async def _refuse_while_draining(self, message: IncomingMessage, sink: ReplySink) -> Outcome:
        log.info("draining: message %s in %s not answered", message.message_id, message.key)
        await _tell(sink, DRAINING_NOTICE)
        return Outcome(Status.DRAINING, DRAINING_NOTICE)

    async def _open_ledger(self) -> None:
        try:
            await self._budgets.ledger.open()
        except StoreError as exc:
            log.warning("the cost ledger is unavailable (%s); usage will not be recorded", exc)

    async def _ensure_builder(self, message: IncomingMessage | None = None) -> ContextBuilder:
        """The builder of the message's model (its context and counter); None: the default model's."""
        return (await self._models.choose(message)).builder

    def _check_room(self, builder: ContextBuilder) -> None:
        """Refuse to start when some system prompt leaves no room for a question (doctor says how much)."""
        prompts = self._settings.named_system_prompts()
        room, prompt = builder.tightest_room([(n, t + SPEAKERS_NOTE) for n, t in prompts])
        if room < MIN_USER_TEXT_TOKENS:
            budget = builder.budget
            raise ContextError(
                f"the {budget.context_length}-token context less max_output_tokens "
                f"({budget.max_output_tokens}) and safety_margin_tokens ({budget.safety_margin}) "
                f"leaves {max(room, 0)} tokens for a question under {prompt} (at least "
                f"{MIN_USER_TEXT_TOKENS} needed): lower max_output_tokens or shorten the prompt "
                "(glimpse doctor says by how much)"
            )

    @asynccontextmanager
    async def _conversation_lock(self, key: ConversationKey) -> AsyncIterator[None]:
        """Messages of one conversation are answered in order; other conversations run concurrently."""
        async with self._leases.hold(key):
            yield

    async def _prune_forever(self) -> None:
        while True:
            cutoff = time.time() - self._settings.retention_days * 86400
            try:
                removed = await self._store.prune(cutoff)
                if removed:
                    log.info(
                        "pruned %d turns older than %d days", removed, self._settings.retention_days
                    )
            except StoreError as exc:
                log.warning("could not prune old turns: %s", exc)
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)


def _ignore_images(notes: list[str], model: str) -> tuple[()]:
    """No images for a model that cannot read them: say so once."""
    note = f"The model I use ({model}) can't read images, so I ignored them."
    if note not in notes:
        notes.append(note)
    return ()


def _names(files: Sequence[str]) -> str:
    shown = ", ".join(display_name(name) for name in files[:5])  # one line, no RTL overrides
    return shown + (f" and {len(files) - 5} more" if len(files) > 5 else "")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _readable(text: str) -> str:
    """The text for the model: broken UTF-8 (lone surrogates) as U+FFFD; "" if nothing in it is visible."""
    text = _LONE_SURROGATE.sub("\ufffd", text).strip()
    return text if any(not _invisible(ch) for ch in text) else ""


def _invisible(ch: str) -> bool:
    """Spaces, zero-width and direction marks (Cf), control characters (Cc)."""
    return ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc")


async def _tell(sink: ReplySink, text: str) -> None:
    """Best effort: a sink that itself fails must not turn one error into two."""
    try:
        await sink.notice(text)
    except Exception:
        log.exception("could not deliver a notice to the user")
