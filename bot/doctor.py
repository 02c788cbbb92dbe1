"""`glimpse doctor`: one line per check of config, key, model, store and platforms, with what to fix."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from bot.config import Secrets, Settings
from bot.openrouter import ModelError, OpenRouterClient
from bot.store import StoreError, open_store

__all__ = ["Check", "discord_invite_url", "run_checks"]

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

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.name}: {self.detail}" + (
            f" — fix: {self.fix}" if self.fix and not self.ok else ""
        )


def discord_invite_url(application_id: str) -> str:
    return (
        f"https://discord.com/oauth2/authorize?client_id={application_id}"
        f"&permissions={DISCORD_PERMISSIONS}&scope=bot%20applications.commands"
    )


async def run_checks(
    settings: Settings,
    secrets: Secrets,
    *,
    config_path: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the report; exit code 0 when every check passed, 1 otherwise."""
    out = out or sys.stdout
    checks = [
        Check(
            True,
            "config",
            f"loaded from {config_path}" if config_path else "defaults and environment",
        )
    ]
    checks += await _openrouter_checks(settings, secrets)
    checks.append(await _store_check(settings))
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
                "create a key at https://openrouter.ai/keys and export it",
            )
        ]
    client = OpenRouterClient(settings, key)
    try:
        checks = [await _key_check(client)]
        info = await client.model_info()
        if not info.from_api:
            checks.append(
                Check(
                    False,
                    "model",
                    f"could not read {settings.model} from {settings.base_url}/models",
                    "check OPENROUTER_BASE_URL and the network; the bot would assume 4,096 tokens",
                )
            )
        elif "image" not in info.input_modalities:
            checks.append(
                Check(
                    False,
                    "model",
                    f"{info.id} does not take images (inputs: {', '.join(info.input_modalities)})",
                    "set GLIMPSE_MODEL to a vision model such as meta-llama/llama-3.2-90b-vision-instruct",
                )
            )
        else:
            checks.append(
                Check(
                    True,
                    "model",
                    f"{info.id}: {info.context_length:,}-token context, reads images, "
                    f"${info.prompt_price * 1e6:.2f}/M in, ${info.completion_price * 1e6:.2f}/M out",
                )
            )
        return checks
    finally:
        await client.close()


async def _key_check(client: OpenRouterClient) -> Check:
    try:
        data = await client.key_info()
    except ModelError as exc:
        return Check(
            False, "key", exc.user_message, "check OPENROUTER_API_KEY (and OPENROUTER_BASE_URL)"
        )
    info = data.get("data", data)
    label = info.get("label") or "unnamed"
    usage = info.get("usage")
    limit = info.get("limit")
    spent = f", ${usage:.2f} used" if isinstance(usage, int | float) else ""
    cap = f" of ${limit:.2f}" if isinstance(limit, int | float) else ""
    return Check(True, "key", f"valid ({label}{spent}{cap})")


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":[redacted]@")
    return urlunsplit(parts._replace(netloc=netloc))


async def _store_check(settings: Settings) -> Check:
    url = settings.resolved_store_url()
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
            f"{_without_password(url)}: {exc}",
            "set GLIMPSE_STORE_URL to a writable sqlite:/// path or a reachable redis://",
        )
    return Check(True, "store", _without_password(url))


def _platform_checks(settings: Settings, secrets: Secrets) -> list[Check]:
    checks = []
    if secrets.discord_token:
        detail = "DISCORD_TOKEN is set"
        if settings.discord.application_id:
            detail += f"; invite: {discord_invite_url(settings.discord.application_id)}"
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
