"""`glimpse doctor`: one line per check of config, key, model, store and platforms, with what to fix."""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass
from typing import TextIO

from bot.config import Secrets, Settings
from bot.context import MIN_USER_TEXT_TOKENS, Budget, ContextBuilder
from bot.memory import SPEAKERS_NOTE
from bot.models import expiry_lines, is_listed, models_in_use
from bot.models.health import EXPIRY_WARNING_DAYS
from bot.openrouter import ModelError, ModelInfo, OpenRouterClient
from bot.store import StoreError, is_relative_sqlite, open_store, sqlite_path, store_location
from bot.tokens import TokenCounter

__all__ = [
    "Check",
    "discord_invite_url",
    "discord_user_install_url",
    "relative_store_problem",
    "run_checks",
]

KEYS_PAGE = "https://openrouter.ai/keys"
MODELS_PAGE = "https://openrouter.ai/models"
OPENROUTER_API_BASE = "https://openrouter.ai/api/v1"
MIN_OUTPUT_TOKENS = 16  # the least max_output_tokens the config accepts
DOCTOR_MAX_RETRIES = 1  # a dead base URL is reported in seconds, not after the service's backoff

# View channels, send messages, send in threads, create public threads, embed links,
# attach files, read message history, add reactions, use application commands.
DISCORD_PERMISSIONS = (
    1024 | 2048 | 274877906944 | 34359738368 | 16384 | 32768 | 65536 | 64 | 2147483648
)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report."""

    ok: bool
    name: str
    detail: str
    fix: str = ""
    warn: bool = False  # passes (exit code 0) but the operator should read it

    def line(self) -> str:
        mark = "FAIL" if not self.ok else "WARN" if self.warn else "ok  "
        shown = self.fix and (self.warn or not self.ok)
        return f"{mark} {self.name}: {self.detail}" + (f" — fix: {self.fix}" if shown else "")


def discord_invite_url(application_id: str) -> str:
    return (
        f"https://discord.com/oauth2/authorize?client_id={application_id}"
        f"&permissions={DISCORD_PERMISSIONS}&scope=bot%20applications.commands"
    )


def discord_user_install_url(application_id: str) -> str:
    """Install to one's own account (integration type 1): commands only, no bot user, no permissions."""
    return (
        f"https://discord.com/oauth2/authorize?client_id={application_id}"
        "&integration_type=1&scope=applications.commands"
    )


async def run_checks(
    settings: Settings,
    secrets: Secrets,
    *,
    config_path: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the report; exit code 0 when every check passed (warnings included), 1 otherwise."""
    out = out or sys.stdout
    checks = [
        Check(
            True,
            "config",
            f"loaded from {config_path}" if config_path else "defaults and environment",
        )
    ]
    checks += await _openrouter_checks(settings, secrets)
    checks.append(await _store_check(settings, runs_platforms=_has_platform(secrets)))
    checks += _platform_checks(settings, secrets)
    for check in checks:
        print(check.line(), file=out)
    return 0 if all(check.ok for check in checks) else 1


async def _openrouter_checks(settings: Settings, secrets: Secrets) -> list[Check]:
    key = secrets.openrouter_api_key.get_secret_value() if secrets.openrouter_api_key else ""
    if not key:
        return [
            Check(
                False,
                "key",
                "OPENROUTER_API_KEY is not set",
                f"create a key at {KEYS_PAGE} and export it",
            )
        ]
    quick = settings.model_copy(
        update={"max_retries": min(settings.max_retries, DOCTOR_MAX_RETRIES)}
    )
    client = OpenRouterClient(quick, key)
    try:
        key_check, answered = await _key_check(client, settings)
        if key_check.name == "openrouter":  # nothing answers at the base URL: nothing more to ask
            return [key_check]
        info = await client.model_info()
        return [
            key_check,
            _model_check(settings, info, listing_read=answered),
            _budget_check(settings, info),
            await _models_check(settings, client),
        ]
    finally:
        await client.close()


async def _key_check(client: OpenRouterClient, settings: Settings) -> tuple[Check, bool]:
    """GET /key: the key's check, and whether OpenRouter itself answered (so GET /models can be trusted)."""
    try:
        data = await client.key_info()
    except ModelError as exc:
        return _key_failure(exc, settings.base_url), exc.status in (401, 402, 403)
    info = data.get("data", data)
    label = info.get("label") or "unnamed"
    usage = info.get("usage")
    limit = info.get("limit")
    spent = f", ${usage:.2f} used" if isinstance(usage, int | float) else ""
    cap = f" of ${limit:.2f}" if isinstance(limit, int | float) else ""
    return Check(True, "key", f"valid ({label}{spent}{cap})"), True


def _key_failure(exc: ModelError, base_url: str) -> Check:
    """What a failed GET /key means for the operator: the base URL, the key, or the account."""
    if exc.status is None and exc.kind in ("unavailable", "timeout"):
        return Check(
            False,
            "openrouter",
            f"cannot reach OPENROUTER_BASE_URL ({base_url}): {_network_reason(exc)}",
            f"check the URL (OpenRouter's is {OPENROUTER_API_BASE}), DNS, proxy and firewall",
        )
    if exc.status == 401:
        return Check(
            False,
            "key",
            f"OpenRouter refused OPENROUTER_API_KEY (401: {_said(exc)})",
            f"create a key at {KEYS_PAGE} and export it as OPENROUTER_API_KEY",
        )
    if exc.status in (402, 403):
        return Check(
            False,
            "key",
            f"OpenRouter refuses service to OPENROUTER_API_KEY ({exc.status}: {_said(exc)})",
            f"check the key's credits and limits at {KEYS_PAGE}",
        )
    return Check(
        False,
        "key",
        f"GET {base_url}/key failed ({exc.detail}): could not check OPENROUTER_API_KEY",
        f"check that OPENROUTER_BASE_URL is OpenRouter's API ({OPENROUTER_API_BASE}) or a proxy of it",
    )


def _said(exc: ModelError) -> str:
    """OpenRouter's own message in an error's detail ("User not found."), else the whole detail."""
    return exc.detail.partition(" message=")[2] or exc.detail


def _network_reason(exc: ModelError) -> str:
    """The innermost cause of a connection failure, in words ("Connection refused"), else the detail."""
    cause: BaseException | None = exc.__context__
    seen: list[BaseException] = []
    while cause is not None and cause not in seen:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    for error in reversed(seen):
        if isinstance(error, OSError) and error.errno:
            return os.strerror(error.errno) if error.errno > 0 else str(error.strerror)
    return exc.detail


def _model_check(settings: Settings, info: ModelInfo, *, listing_read: bool) -> Check:
    assumed = f"the bot would assume a {info.context_length:,}-token context"
    if not info.from_api and listing_read:
        return Check(
            False,
            "model",
            f"model {settings.model} is not listed by OpenRouter (GET /models); {assumed}",
            f"check the id at {MODELS_PAGE} and set GLIMPSE_MODEL to it",
        )
    if not info.from_api:
        return Check(
            False,
            "model",
            f"could not read {settings.model} from {settings.base_url}/models; {assumed}",
            f"check that OPENROUTER_BASE_URL is OpenRouter's API ({OPENROUTER_API_BASE})",
        )
    if "image" not in info.input_modalities:
        return Check(
            False,
            "model",
            f"{info.id} does not take images (inputs: {', '.join(info.input_modalities)})",
            "set GLIMPSE_MODEL to a vision model such as meta-llama/llama-3.2-90b-vision-instruct",
        )
    return Check(
        True,
        "model",
        f"{info.id}: {info.context_length:,}-token context, reads images, "
        f"${info.prompt_price * 1e6:.2f}/M in, ${info.completion_price * 1e6:.2f}/M out",
    )


def _budget_check(settings: Settings, info: ModelInfo) -> Check:
    """The service's own arithmetic: does the longest system prompt leave room for a question?"""
    budget = Budget(info.context_length, settings.max_output_tokens, settings.safety_margin_tokens)
    builder = ContextBuilder(TokenCounter(), budget, image_tokens=settings.image_prompt_tokens)
    room, prompt = builder.tightest_room(
        [(name, text + SPEAKERS_NOTE) for name, text in settings.named_system_prompts()]
    )
    spent = (
        f"{info.context_length:,}-token context − max_output_tokens {settings.max_output_tokens:,} "
        f"− safety_margin_tokens {settings.safety_margin_tokens:,} = {budget.prompt_tokens:,} "
        "prompt tokens"
    )
    if room >= MIN_USER_TEXT_TOKENS:
        return Check(
            True, "budget", f"{spent}; {room:,} left for a question and history under {prompt}"
        )
    short = MIN_USER_TEXT_TOKENS - room
    fix = f"shorten {prompt}"
    if settings.max_output_tokens - short >= MIN_OUTPUT_TOKENS:
        fix = f"lower max_output_tokens (GLIMPSE_MAX_OUTPUT_TOKENS) to {settings.max_output_tokens - short:,} or less, or {fix}"
    effect = (
        '`glimpse run` and `glimpse chat` refuse to start (every message would fail with "no room")'
    )
    return Check(
        False,
        "budget",
        f"{spent}, too few for {prompt} and a question of {MIN_USER_TEXT_TOKENS} tokens: {effect}",
        fix,
    )


async def _models_check(settings: Settings, client: OpenRouterClient) -> Check:
    """Every model in use (default, channel_models, admins' choices): listed, and not expiring soon."""
    catalogue = await client.catalogue()
    in_use = models_in_use(settings, await _stored_channel_models(settings))
    if catalogue is None:
        return Check(True, "models", "could not read GET /models to check expiry dates", warn=True)
    problems = expiry_lines(in_use, catalogue, dt.datetime.now(dt.UTC).date())
    problems += [
        f"{where} {model} is not listed by OpenRouter (the next model in line answers there)"
        for model, where in in_use[1:]  # the default model has its own line above
        if not is_listed(model, catalogue)
    ]
    if not problems:
        count = len({model for model, _ in in_use})
        return Check(
            True,
            "models",
            f"{count} in use, all listed, none expiring within {EXPIRY_WARNING_DAYS} days",
        )
    fallback = "" if settings.fallback_models else "; set fallback_models so answers go on"
    return Check(
        True,
        "models",
        "; ".join(problems),
        f"choose models OpenRouter keeps ({MODELS_PAGE}){fallback}",
        warn=True,
    )


async def _stored_channel_models(settings: Settings) -> dict[tuple[str, str, str], str]:
    """The channels' models admins set, from the store; none if it cannot be read (its check says why)."""
    try:
        store = open_store(settings.resolved_store_url())
        await store.open()
        try:
            return await store.channel_models()
        finally:
            await store.close()
    except (StoreError, ValueError, OSError):
        return {}


async def _store_check(settings: Settings, *, runs_platforms: bool) -> Check:
    url = settings.resolved_store_url()
    where = store_location(url)
    try:
        store = open_store(url)
        await store.open()
        try:
            await store.ping()
        finally:
            await store.close()
    except (StoreError, ValueError, OSError) as exc:
        return Check(
            False,
            "store",
            f"{where}: {exc}",
            "set GLIMPSE_STORE_URL to a writable sqlite:////absolute/path.db or a reachable redis://",
        )
    problem = relative_store_problem(settings)
    if problem is not None:  # a failure only where `glimpse run` is the way Glimpse is used
        detail, fix = problem
        uses = "" if runs_platforms else "`glimpse chat` uses it there, "
        detail = f"{detail}; {uses}`glimpse run` refuses it"
        return Check(not runs_platforms, "store", detail, fix, warn=True)
    return Check(True, "store", where)


def relative_store_problem(settings: Settings) -> tuple[str, str] | None:
    """Where a store naming a relative SQLite path resolves from here, and the fix; None if absolute."""
    url = settings.resolved_store_url()
    if not is_relative_sqlite(url):
        return None
    path = sqlite_path(url)
    where = os.path.abspath(path)
    if not settings.store_url:
        named = (
            f"data_dir (GLIMPSE_DATA_DIR) {settings.data_dir}"
            if settings.data_dir
            else f"XDG_DATA_HOME {os.environ.get('XDG_DATA_HOME', '')}"
        )
        return (
            f"{named} is relative: the store resolves to {where}",
            "set GLIMPSE_DATA_DIR to an absolute directory",
        )
    return (
        f"GLIMPSE_STORE_URL {url} is relative: it resolves to {where} from the current directory",
        f"for /{path} write sqlite:////{path} (four slashes make the path absolute)",
    )


def _has_platform(secrets: Secrets) -> bool:
    return bool(secrets.discord_token or secrets.slack_bot_token)


def _platform_checks(settings: Settings, secrets: Secrets) -> list[Check]:
    checks = []
    if secrets.discord_token:
        detail = "DISCORD_TOKEN is set"
        if settings.discord.application_id:
            application_id = settings.discord.application_id
            detail += (
                f"; invite: {discord_invite_url(application_id)}"
                f"; install to a user account: {discord_user_install_url(application_id)}"
            )
        checks.append(Check(True, "discord", detail))
    if secrets.slack_bot_token:
        missing = [
            name
            for name, value in (
                ("SLACK_APP_TOKEN (Socket Mode)", secrets.slack_app_token),
                ("SLACK_SIGNING_SECRET (HTTP mode)", secrets.slack_signing_secret),
            )
            if not value
        ]
        if len(missing) == 2:
            checks.append(
                Check(
                    False,
                    "slack",
                    "SLACK_BOT_TOKEN is set but neither app token nor signing secret",
                    "set SLACK_APP_TOKEN for Socket Mode or SLACK_SIGNING_SECRET for HTTP",
                )
            )
        else:
            checks.append(
                Check(
                    True,
                    "slack",
                    "SLACK_BOT_TOKEN is set" + (f"; not set: {missing[0]}" if missing else ""),
                )
            )
    if not checks:
        checks.append(
            Check(
                True,
                "platforms",
                "none configured: `glimpse chat` works; set DISCORD_TOKEN or SLACK_BOT_TOKEN to run on a platform",
            )
        )
    return checks
