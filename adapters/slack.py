"""The Slack adapter: a Bolt app reached by Socket Mode or HTTP, answering through the core."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_catch_up import SlackBacklog
from adapters.slack_listeners import SlackListeners
from adapters.slack_sink import slack_error
from bot.config import ConfigError, Secrets, Settings, StartupError
from bot.conversations import Conversations
from bot.inbox import CatchUpReport

__all__ = ["EVENTS_PATH", "SlackAdapter", "api_base_url", "run_slack"]

log = logging.getLogger("glimpse.slack")

EVENTS_PATH = "/slack/events"
DEFAULT_API_URL = "https://slack.com/api/"
RATE_LIMIT_RETRIES = 3  # 429s retried after Slack's Retry-After
SERVER_ERROR_RETRIES = 2  # a 500/503 blip must not cost a finished answer (backoff 0.5 s, 1 s)
DRAIN_TIMEOUT_SECONDS = 30.0  # answers in flight at shutdown get this long to finish
PLATFORM = "slack"
SOCKET_HEALTH_INTERVAL_SECONDS = 10.0  # how often Socket Mode's connection state is reported
APP_TOKEN_HELP = "an app-level token (xapp-…) with connections:write, or run with --http"
# What Bolt's request parsing raises on a body that is not a JSON object or form (signed or not).
UNREADABLE_BODY = (ValueError, RecursionError, AttributeError, TypeError)


class SlackAdapter:
    """One workspace's Bolt app: the Web API client, the listeners, and the two ways in."""

    def __init__(
        self, conversations: Conversations, settings: Settings, secrets: Secrets, *, http: bool
    ) -> None:
        token = _required(
            secrets.slack_bot_token, "SLACK_BOT_TOKEN", "the Bot User OAuth Token (xoxb-…)"
        )
        signing_secret = _optional(secrets.slack_signing_secret)
        if http and not signing_secret:
            raise ConfigError(
                "SLACK_SIGNING_SECRET is not set: HTTP mode needs it to verify requests from Slack"
            )
        app_token = (
            "" if http else _required(secrets.slack_app_token, "SLACK_APP_TOKEN", APP_TOKEN_HELP)
        )
        self._app_token = app_token
        self._conversations = conversations
        self._session = aiohttp.ClientSession()
        self.client = AsyncWebClient(
            token=token,
            base_url=api_base_url(secrets.slack_api_url),
            session=self._session,
            logger=log,
        )
        self.client.retry_handlers.append(
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)
        )
        self.client.retry_handlers.append(
            AsyncServerErrorRetryHandler(max_retry_count=SERVER_ERROR_RETRIES)
        )
        # process_before_response: listeners only ack and start a task, so Slack still hears back at
        # once, and the HTTP response never races the listener (Bolt's lazy listeners are untracked).
        self.app = AsyncApp(
            client=self.client,
            signing_secret=signing_secret,
            process_before_response=True,
            name="glimpse",
            logger=_bolt_logger(),
        )
        self.listeners = SlackListeners(
            conversations, settings.slack, client=self.client, bot_token=token
        )
        self.listeners.register(self.app)
        conversations.inbox.register(PLATFORM, self.listeners.reopen)  # answers a crash cut short
        self._runner: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._bot_ids = ("", "")  # (user id, bot id), from auth.test
        self._catch_up: asyncio.Task[CatchUpReport] | None = None

    async def check_auth(self) -> None:
        """Fail fast with a clear message when Slack refuses the token or cannot be reached."""
        try:
            auth = await self.client.auth_test()
        except SlackApiError as exc:
            raise ConfigError(f"Slack refused SLACK_BOT_TOKEN ({slack_error(exc)})") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise StartupError(
                f"cannot reach Slack at {self.client.base_url} (SLACK_API_URL, or the network): "
                f"{exc or type(exc).__name__}"
            ) from None
        self.listeners.bot_name = str(auth.get("user") or self.listeners.bot_name)
        self._bot_ids = (str(auth.get("user_id") or ""), str(auth.get("bot_id") or ""))
        team = auth.get("team") or auth.get("team_id")
        log.info("slack: signed in to %s as @%s", team, self.listeners.bot_name)

    # --- HTTP: Bolt's aiohttp adapter behind our own server ---

    def web_app(self) -> web.Application:
        """POST /slack/events for events and commands; Bolt answers 401 to bad or stale signatures."""
        app = web.Application()
        app.router.add_post(EVENTS_PATH, self._http)
        return app

    async def serve_http(self, host: str, port: int) -> int:
        """Start listening; the bound port (useful with port 0)."""
        self._runner = web.AppRunner(self.web_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound = int(self._runner.addresses[0][1])
        log.info("slack: receiving events over HTTP on %s:%d%s", host, bound, EVENTS_PATH)
        return bound

    async def _http(self, request: web.Request) -> web.Response:
        stamp = request.headers.get("X-Slack-Request-Timestamp")
        if stamp is not None and not stamp.strip().isdigit():  # Bolt would fail with a 500
            log.warning("slack: request with a malformed signature timestamp; answered 401")
            return web.Response(status=401, text="invalid request signature")
        try:
            bolt_request = await to_bolt_request(request)
        except UNREADABLE_BODY as exc:  # not JSON, not UTF-8, nested too deep, not an object
            log.warning("slack: unreadable request body (%s); answered 400", type(exc).__name__)
            return web.Response(status=400, text="unreadable request body")
        bolt_response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    # --- Socket Mode ---

    def socket_mode_handler(self) -> AsyncSocketModeHandler:
        """The Socket Mode connection, using the same Web API client (and so SLACK_API_URL)."""
        if self._socket is None:
            if not self._app_token:
                raise ConfigError(f"SLACK_APP_TOKEN is not set: export {APP_TOKEN_HELP}")
            self._socket = AsyncSocketModeHandler(self.app, self._app_token, web_client=self.client)
        return self._socket

    async def connect_socket_mode(self) -> None:
        await self.socket_mode_handler().connect_async()
        log.info("slack: connected in Socket Mode")

    async def report_socket_health(self) -> None:
        """Forever: tell the readiness check whether the Socket Mode connection is up."""
        client = self.socket_mode_handler().client
        while True:
            self._conversations.readiness.set(PLATFORM, await client.is_connected())
            await asyncio.sleep(SOCKET_HEALTH_INTERVAL_SECONDS)

    # --- after downtime ---

    def catch_up(self, session_started: float) -> asyncio.Task[CatchUpReport]:
        """In the background: answer what was sent while Glimpse was away (README: After downtime)."""
        user_id, bot_id = self._bot_ids
        backlog = SlackBacklog(
            self.client,
            bot_user_id=user_id,
            answer=partial(self.listeners.answer_missed, bot_user_id=user_id, bot_id=bot_id),
        )
        run = self._conversations.catch_up.run(PLATFORM, backlog, session_started=session_started)
        self._catch_up = asyncio.create_task(run, name="glimpse-slack-catch-up")
        return self._catch_up

    # --- the end ---

    async def drain(self) -> None:
        """Wait until every answer in flight is done."""
        await self.listeners.drain()

    async def close(self) -> None:
        """Stop taking requests, give answers in flight time to finish, release connections."""
        if self._catch_up is not None:
            self._catch_up.cancel()
            await asyncio.gather(self._catch_up, return_exceptions=True)
        if self._socket is not None:
            await self._socket.close_async()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.listeners.drain(DRAIN_TIMEOUT_SECONDS)
        await self._session.close()


async def run_slack(
    conversations: Conversations,
    settings: Settings,
    secrets: Secrets,
    *,
    http: bool = False,
    port: int = 3000,
    host: str = "0.0.0.0",
) -> None:
    """Run until cancelled: Socket Mode, or the Events API over HTTP with `http=True`.

    `glimpse run --platform slack [--http --port 3000]` calls it as::

        await run_slack(conversations, settings, secrets, http=True, port=3000)
    """
    adapter = SlackAdapter(conversations, settings, secrets, http=http)
    started = time.time()  # messages claimed from now on were delivered to this process
    try:
        await adapter.check_auth()
        if http:
            await adapter.serve_http(host, port)
            conversations.readiness.set(PLATFORM, True)
            adapter.catch_up(started)
            await asyncio.Event().wait()
        else:
            await adapter.connect_socket_mode()
            adapter.catch_up(started)
            await adapter.report_socket_health()
    finally:
        conversations.readiness.set(PLATFORM, False)
        await adapter.close()


def api_base_url(override: str) -> str:
    """SLACK_API_URL or Slack's own; slack_sdk joins method names onto it, so it ends with "/"."""
    base = override.strip() or DEFAULT_API_URL
    return base if base.endswith("/") else base + "/"


def _bolt_logger() -> logging.Logger:
    """Bolt's logger, minus its warning that SLACK_BOT_TOKEN (read from the environment) yields to `client`."""
    logger = logging.getLogger("glimpse.slack.bolt")
    if _not_token_skipped not in logger.filters:
        logger.addFilter(_not_token_skipped)
    return logger


def _not_token_skipped(record: logging.LogRecord) -> bool:
    return "`token` will be unused" not in record.getMessage()


def _optional(secret: SecretStr | None) -> str:
    return secret.get_secret_value().strip() if secret is not None else ""


def _required(secret: SecretStr | None, name: str, what: str) -> str:
    value = _optional(secret)
    if not value:
        raise ConfigError(f"{name} is not set: export {what} (see 'Run on Slack' in the README)")
    return value
