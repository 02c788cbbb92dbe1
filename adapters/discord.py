"""The Discord adapter: gateway events in, `IncomingMessage`s to the core, streamed answers out."""

from __future__ import annotations

import asyncio
import logging
import math
from functools import partial
from typing import Any

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket

from adapters.discord_catch_up import DiscordBacklog, DiscordCatchUp
from adapters.discord_commands import SlashCommands, build_tree
from adapters.discord_quotes import (
    RecentForwards,
    forward_quotes,
    is_reply,
    reply_quote,
)
from adapters.discord_shards import DM_SHARD, IdentifyGate, ShardBoard, plan_shards
from adapters.discord_sink import (
    NO_MENTIONS,
    DiscordSink,
    TargetFactory,
    in_channel,
    quiet_reply,
    reply_to,
    thread_on,
)
from adapters.discord_sync import sync_once
from adapters.discord_translate import (
    PLATFORM,
    ReplyChains,
    author_roles,
    dm_key,
    images_and_files,
    mentions_bot,
    readable_text,
    root_key,
    thread_name,
)
from bot.config import ConfigError, Secrets, Settings, StartupError
from bot.conversations import Conversations
from bot.doctor import discord_invite_url
from bot.fleet import Fleet, LocalFleet, open_fleet
from bot.messages import ConversationKey, IncomingMessage, QuotedMessage, ReplySink

__all__ = [
    "GlimpseDiscord",
    "ShardedGlimpseDiscord",
    "apply_overrides",
    "create_client",
    "intent_help",
    "run_discord",
]

log = logging.getLogger("glimpse.discord")

Quotes = tuple[QuotedMessage, ...]

MAX_CHAIN_HOPS = 12  # messages walked up a reply chain to find its root after a restart
ANSWERED_TYPES = (discord.MessageType.default, discord.MessageType.reply)
PORTAL_URL = "https://discord.com/developers/applications"


def intent_help(application_id: object | None) -> str:
    """The log line for close code 4014: exactly which switch to turn on."""
    page = (
        f"{PORTAL_URL}/{application_id}/bot"
        if application_id
        else f"{PORTAL_URL} → your application → Bot"
    )
    return (
        "Discord refused the Message Content intent (gateway close code 4014). Turn it on: "
        f"{page} → Privileged Gateway Intents → switch on 'MESSAGE CONTENT INTENT' → Save Changes, "
        "then restart Glimpse."
    )


def apply_overrides(secrets: Secrets) -> yarl.URL | None:
    """DISCORD_API_BASE → `Route.BASE`, DISCORD_GATEWAY_URL → `DEFAULT_GATEWAY`; returns the gateway override."""
    if secrets.discord_api_base:
        discord.http.Route.BASE = secrets.discord_api_base.rstrip("/")
    if not secrets.discord_gateway_url:
        return None
    gateway = yarl.URL(secrets.discord_gateway_url)
    DiscordWebSocket.DEFAULT_GATEWAY = gateway
    return gateway


class GlimpseDiscord(discord.Client):
    """discord.py client that routes mentions, thread follow-ups, reply chains and DMs to the core."""

    def __init__(
        self,
        conversations: Conversations,
        settings: Settings,
        *,
        gateway_override: yarl.URL | None = None,
        fleet: Fleet | None = None,
        **options: Any,
    ) -> None:
        # Glimpse never joins voice: skip discord.py's warnings about missing voice libraries.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.default()
        intents.message_content = True  # privileged: switched on in the developer portal
        if settings.discord.application_id:
            options.setdefault("application_id", int(settings.discord.application_id))
        super().__init__(intents=intents, allowed_mentions=NO_MENTIONS, **options)
        self._conversations = conversations
        self._settings = settings
        self._chains = ReplyChains()
        self._forwards = RecentForwards()
        self._fleet: Fleet = fleet if fleet is not None else LocalFleet()
        self.tree = build_tree(self, SlashCommands(conversations, settings, self._chains))
        conversations.inbox.register(PLATFORM, self._reopen)  # answers a crash cut short
        self.catch_up = DiscordCatchUp(  # what was sent while no session was live
            self,
            conversations.catch_up,
            DiscordBacklog(
                self, is_active=conversations.is_active, allow_dms=settings.discord.allow_dms
            ),
        )
        if gateway_override is not None:
            self._pin_gateway(gateway_override)

    async def setup_hook(self) -> None:
        await sync_once(self.tree, self._settings.discord.guild_ids, self._fleet)

    async def close(self) -> None:
        await self.catch_up.stop()
        try:
            await super().close()
        finally:
            await self._fleet.aclose()

    async def on_connect(self) -> None:
        self.catch_up.connected()  # READY parsed: messages of the new session come after this

    async def on_ready(self) -> None:
        invite = (
            f"; invite: {discord_invite_url(str(self.application_id))}"
            if self.application_id
            else ""
        )
        log.info("connected to Discord as %s in %d servers%s", self.user, len(self.guilds), invite)
        self._conversations.readiness.set(PLATFORM, True)
        self._start_catch_up()

    def _start_catch_up(self) -> None:
        """READY: a fresh session (a resume replays what it missed itself); catch up."""
        self.catch_up.start()

    async def on_resumed(self) -> None:
        self._conversations.readiness.set(PLATFORM, True)

    async def on_disconnect(self) -> None:
        self._conversations.readiness.set(PLATFORM, False)

    async def on_message(self, message: discord.Message) -> None:
        if not self._from_a_person(message):
            return
        assert self.user is not None
        # Before any await, so messages are seen in the order the gateway sent them.
        forwarded = forward_quotes(message, self.user.id)
        commented = self._forwards.see(message, forwarded)
        if message.guild is None:
            await self._direct(message, forwarded)
            return
        channel = await self._channel_of(message)
        if isinstance(channel, discord.Thread):
            await self._in_thread(message, channel, forwarded, commented)
        else:
            await self._in_channel(message, channel, forwarded, commented)

    # --- routing ---

    def _from_a_person(self, message: discord.Message) -> bool:
        """Not a bot (this one included), not a webhook, not a system message."""
        return (
            not message.author.bot
            and message.webhook_id is None
            and message.type in ANSWERED_TYPES
            and self.user is not None
            and message.author.id != self.user.id
        )

    async def _direct(self, message: discord.Message, forwarded: Quotes) -> None:
        """Every DM is answered (a forward too, on its own: no comment needs to bring it)."""
        if not self._settings.discord.allow_dms:
            log.debug("direct message %s ignored: DMs are off", message.id)
            return
        quoted = await self._quotes(message, forwarded)
        incoming = self._incoming(
            message, dm_key(message.channel.id), parent=None, quoted=quoted, is_direct=True
        )
        await self._answer(message, incoming, in_channel(message.channel))

    async def _in_thread(
        self,
        message: discord.Message,
        thread: discord.Thread,
        forwarded: Quotes,
        commented: Quotes,
    ) -> None:
        """A mention, or any message in a thread the bot opened or has answered in."""
        assert message.guild is not None and self.user is not None
        key = root_key(message.guild.id, thread.id)
        followed = thread.owner_id == self.user.id or await self._conversations.is_active(key)
        if not (followed or mentions_bot(message, self.user.id)):
            return
        # In a followed thread the forward was answered itself; else the comment brings it.
        quoted = await self._quotes(message, forwarded, () if followed else commented)
        incoming = self._incoming(message, key, parent=thread.parent_id, quoted=quoted)
        await self._answer(message, incoming, in_channel(thread))

    async def _in_channel(
        self, message: discord.Message, channel: Any, forwarded: Quotes, commented: Quotes
    ) -> None:
        """A reply in a chain the bot answers, or a mention: a new thread (or a reply where threads can't be)."""
        assert message.guild is not None and self.user is not None
        root = await self._chain_root(message)
        if root is None and not mentions_bot(message, self.user.id):
            return
        root = root or message.id
        quoted = await self._quotes(message, forwarded, commented)
        incoming = self._incoming(
            message, root_key(message.guild.id, root), parent=channel.id, quoted=quoted
        )
        target: TargetFactory = reply_to(message)
        if root == message.id and isinstance(channel, discord.TextChannel):
            images = [*incoming.images, *(ref for quote in quoted for ref in quote.images)]
            files = [*incoming.files, *(ref for quote in quoted for ref in quote.files)]
            target = thread_on(message, thread_name(incoming.text, images, files))
        self._chains.remember(message.id, root)
        await self._answer(message, incoming, target, root=root)

    async def _answer(
        self,
        message: discord.Message,
        incoming: IncomingMessage,
        target: TargetFactory,
        *,
        root: int | None = None,
    ) -> None:
        on_posted = partial(self._chains.remember, root_id=root) if root is not None else None
        sink = DiscordSink(target, quiet=quiet_reply(message), on_posted=on_posted)
        try:
            await self._conversations.handle(incoming, sink)
        finally:
            await sink.close()

    async def _reopen(
        self, incoming: IncomingMessage, reply_id: str
    ) -> tuple[IncomingMessage, ReplySink]:
        """For the inbox: a sink that edits the interrupted answer's message (`channel/message`
        ids), or, if none was posted, writes in the conversation's thread or DM."""
        channel_id, _, message_id = reply_id.partition("/")
        channel = self.get_partial_messageable(int(channel_id or incoming.key.thread))
        sink = DiscordSink(in_channel(channel))
        if message_id:
            sink.reopen(channel.get_partial_message(int(message_id)))
        return incoming, sink

    def _incoming(
        self,
        message: discord.Message,
        key: ConversationKey,
        *,
        parent: int | None,
        quoted: Quotes,
        is_direct: bool = False,
    ) -> IncomingMessage:
        assert self.user is not None
        images, files, others = images_and_files(message)
        return IncomingMessage(
            key=key,
            message_id=str(message.id),
            author_id=str(message.author.id),
            author_name=message.author.display_name,
            text=readable_text(message, self.user.id),
            images=images,
            files=files,
            other_files=others,
            author_roles=author_roles(message.author),
            parent_channel=str(parent) if parent is not None else None,
            is_direct=is_direct,
            shared=not is_direct,  # a guild channel or thread: several people may talk
            quoted=quoted,
        )

    async def _quotes(
        self, message: discord.Message, forwarded: Quotes, commented: Quotes = ()
    ) -> Quotes:
        """What the message brings: a forward it comments on, the person's message it replies to, its forwards."""
        assert self.user is not None
        replied = await self._replied(message)
        if replied is None or replied.author.id == self.user.id:  # the bot's own: already in memory
            return (*commented, *forwarded)
        quote = reply_quote(replied, self.user.id)
        # Nothing to bring: a sticker, a system message.
        if not (quote.text or quote.images or quote.files or quote.other_files):
            return (*commented, *forwarded)
        return (*commented, quote, *forwarded)

    # --- lookups ---

    async def _replied(self, message: discord.Message) -> discord.Message | None:
        """The message this one replies to: as Discord resolved it, else fetched from this channel."""
        if not is_reply(message):
            return None
        assert message.reference is not None and message.reference.message_id is not None
        resolved = message.reference.resolved
        if isinstance(resolved, discord.Message):
            return resolved
        if resolved is not None or message.reference.channel_id != message.channel.id:
            return None  # deleted, or in another channel: never fetched across channels
        try:
            return await message.channel.fetch_message(message.reference.message_id)
        except discord.HTTPException as exc:  # 403 no history access, 404 deleted
            log.info("cannot read the message %s replies to: %s", message.id, exc)
            return None

    async def _channel_of(self, message: discord.Message) -> Any:
        """The message's channel; fetched when the cache only has a partial one (is it a thread?)."""
        if not isinstance(message.channel, discord.PartialMessageable):
            return message.channel
        try:
            return await self.fetch_channel(message.channel.id)
        except discord.HTTPException as exc:
            log.warning("cannot look up channel %s: %s", message.channel.id, exc)
            return message.channel

    async def _chain_root(self, message: discord.Message) -> int | None:
        """The root of the reply chain this message continues, if the bot answers in that chain."""
        assert message.guild is not None and self.user is not None
        ref = message.reference
        if not is_reply(message) or ref is None or ref.channel_id != message.channel.id:
            return None
        assert ref.message_id is not None
        known = self._chains.root_of(ref.message_id)
        if known is not None:
            return known
        replied = ref.resolved
        if not isinstance(replied, discord.Message) or replied.author.id != self.user.id:
            return None
        return await self._walk_up(message, replied)

    async def _walk_up(self, message: discord.Message, current: discord.Message) -> int | None:
        """After a restart: follow references up from the bot's message to a root the core remembers."""
        assert message.guild is not None
        try:
            for _ in range(MAX_CHAIN_HOPS):
                if await self._conversations.is_active(root_key(message.guild.id, current.id)):
                    self._chains.remember(current.id, current.id)
                    return current.id
                up = current.reference
                if up is None or up.message_id is None:
                    return None
                resolved = up.resolved
                current = (
                    resolved
                    if isinstance(resolved, discord.Message)
                    else (await message.channel.fetch_message(up.message_id))
                )
        except discord.HTTPException as exc:
            log.info("cannot follow the reply chain of message %s: %s", message.id, exc)
        return None

    def _pin_gateway(self, gateway: yarl.URL) -> None:
        """Keep resuming through the override: discord.py would switch to READY's `resume_gateway_url`."""
        parsers = self._connection.parsers
        parse_ready = parsers["READY"]

        def ready(data: Any) -> None:
            ws = self._socket_of(data)
            if ws is not None:
                ws.gateway = gateway
            parse_ready(data)

        parsers["READY"] = ready

    def _socket_of(self, ready: Any) -> DiscordWebSocket | None:
        """The websocket a READY payload arrived on."""
        return self.ws


class ShardedGlimpseDiscord(GlimpseDiscord, discord.AutoShardedClient):
    """GlimpseDiscord on the shards `discord.shard_count` / `shard_ids` name, IDENTIFY paced across the fleet."""

    def __init__(self, conversations: Conversations, settings: Settings, **options: Any) -> None:
        super().__init__(conversations, settings, **options)
        self._identify = IdentifyGate(
            self._fleet, window_seconds=settings.discord.identify_window_seconds
        )
        self._board = ShardBoard(
            conversations.readiness, conversations.metrics.registry, self._shard_latency
        )

    async def setup_hook(self) -> None:
        plan = await plan_shards(self.http, self._settings.discord)
        self.shard_count, self.shard_ids = plan.count, list(plan.ids)
        self._identify.max_concurrency = plan.max_concurrency
        self._board.expect(plan.ids)
        log.info(plan.describe())
        if DM_SHARD not in plan.ids and self._settings.discord.allow_dms:
            log.info(
                "discord: direct messages arrive on shard %d only, which another process runs: "
                "this one answers none",
                DM_SHARD,
            )
        await super().setup_hook()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        await self._identify.wait(shard_id)

    async def on_shard_ready(self, shard_id: int) -> None:
        self._board.identified(shard_id)
        assert self.shard_count is not None
        self.catch_up.start((shard_id, self.shard_count))  # this shard's conversations

    def _start_catch_up(self) -> None:
        """Each shard caught up its own conversations on its READY (`on_shard_ready`)."""

    async def on_shard_resumed(self, shard_id: int) -> None:
        self._board.resumed(shard_id)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self._board.disconnected(shard_id)

    async def on_resumed(self) -> None:
        """Readiness follows every shard (`on_shard_resumed`), not any one."""

    async def on_disconnect(self) -> None:
        """Readiness follows every shard (`on_shard_disconnect`), not any one."""

    async def on_message(self, message: discord.Message) -> None:
        self._board.received(message.guild.shard_id if message.guild is not None else DM_SHARD)
        await super().on_message(message)

    def _shard_latency(self, shard_id: int) -> float | None:
        shard = self.get_shard(shard_id)
        latency = shard.latency if shard is not None else math.inf
        return None if math.isinf(latency) or math.isnan(latency) else latency

    def _socket_of(self, ready: Any) -> DiscordWebSocket | None:
        shard = ready.get("shard") if isinstance(ready, dict) else None
        return self._get_websocket(shard_id=shard[0]) if shard else None


def create_client(
    conversations: Conversations, settings: Settings, secrets: Secrets, **options: Any
) -> GlimpseDiscord:
    """A client wired to the core, with the URL overrides applied (options go to `discord.Client`).

    Sharded (an `AutoShardedClient`) when `discord.shard_count` is set; else one connection for every guild.
    """
    kind = GlimpseDiscord if settings.discord.shard_count is None else ShardedGlimpseDiscord
    return kind(
        conversations,
        settings,
        gateway_override=apply_overrides(secrets),
        fleet=open_fleet(settings.resolved_store_url()),
        **options,
    )


async def run_discord(
    conversations: Conversations, settings: Settings, secrets: Secrets, **options: Any
) -> None:
    """Connect and answer until cancelled; ConfigError for a bad token or a refused intent, StartupError for no connection."""
    token = secrets.discord_token.get_secret_value() if secrets.discord_token else ""
    if not token:
        raise ConfigError(
            "DISCORD_TOKEN is not set: copy the bot token from the Developer Portal (Bot → Reset Token)"
        )
    client = create_client(conversations, settings, secrets, **options)
    try:
        async with client:
            await _log_in(client, token)
            await _connect(client)
    except discord.PrivilegedIntentsRequired:
        help_text = intent_help(client.application_id or settings.discord.application_id)
        log.error(help_text)
        raise ConfigError(help_text) from None
    except discord.LoginFailure:
        raise ConfigError(
            "Discord rejected DISCORD_TOKEN: copy a fresh token from the Developer Portal (Bot → Reset Token)"
        ) from None


# What `Client.connect` retries after (and logs with a traceback); before the first READY they end start-up.
RETRIED_ERRORS = (
    OSError,
    aiohttp.ClientError,
    TimeoutError,
    discord.GatewayNotFound,
    discord.HTTPException,
    discord.ConnectionClosed,
)


class _FirstConnection(logging.Filter):
    """On discord.py's client and shard logs until READY: takes the retry traceback off the log and keeps its error."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, RETRIED_ERRORS):
            return True
        if not self.failed.done():
            self.failed.set_result(error)
        return False


def _cause(error: BaseException) -> str:
    return str(error) or type(error).__name__


async def _log_in(client: GlimpseDiscord, token: str) -> None:
    """`client.login` (REST); an unreachable or failing API is a StartupError naming DISCORD_API_BASE."""
    try:
        await client.login(token)
    except (OSError, aiohttp.ClientError, discord.HTTPException) as exc:  # TimeoutError too
        raise StartupError(
            f"cannot reach Discord's API at {discord.http.Route.BASE} ({_cause(exc)}): "
            "check the network or DISCORD_API_BASE"
        ) from None


async def _connect(client: GlimpseDiscord) -> None:
    """`client.connect`, reconnecting once the first READY came; failing before it is a StartupError."""
    first = _FirstConnection()
    client_logs = [logging.getLogger(name) for name in ("discord.client", "discord.shard")]
    for client_log in client_logs:
        client_log.addFilter(first)
    runner = asyncio.ensure_future(client.connect(reconnect=True))
    ready = asyncio.ensure_future(client.wait_until_ready())
    waited: list[asyncio.Future[Any]] = [runner, ready, first.failed]
    try:
        try:
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for client_log in client_logs:
                client_log.removeFilter(first)
            ready.cancel()
        if first.failed.done() and not runner.done():
            raise StartupError(
                f"cannot connect to Discord's gateway at {DiscordWebSocket.DEFAULT_GATEWAY} "
                f"({_cause(first.failed.result())}): check the network or DISCORD_GATEWAY_URL"
            )
        await runner
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
