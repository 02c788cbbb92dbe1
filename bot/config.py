"""Settings: a TOML file overridden by the environment; secrets only from the environment."""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

__all__ = [
    "CatchUpSettings",
    "ConfigError",
    "InboxSettings",
    "Secrets",
    "Settings",
    "StartupError",
    "default_data_dir",
    "load_secrets",
    "load_settings",
]

DEFAULT_MODEL = "meta-llama/llama-3.2-90b-vision-instruct"
DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_SYSTEM_PROMPT = (
    "You are Glimpse, a helpful assistant in a team chat. People show you photos and screenshots "
    "and ask about them. Answer clearly and briefly; use Markdown sparingly. If you cannot see "
    "something in an image, say so rather than guessing."
)


class ConfigError(Exception):
    """A configuration value is wrong; the message names it and says what is allowed (exit 2)."""


class StartupError(Exception):
    """Start-up failed outside the configuration (a service unreachable); the message says what to check (exit 1)."""


def _split_commas(value: Any) -> Any:
    """A comma-separated string (or a JSON array) as a list; anything else unchanged."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text.startswith("["):
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ValueError('must be comma-separated (a,b) or a JSON array (["a", "b"])') from None


def _json_object(value: Any, info: ValidationInfo) -> Any:
    """A string (from the environment) decoded as a JSON object; anything else unchanged."""
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        decoded = None
    if not isinstance(decoded, dict):
        example = _JSON_EXAMPLES.get(info.field_name or "", '{"key": "value"}')
        raise ValueError(
            f"GLIMPSE_{(info.field_name or '').upper()} must be a JSON object, e.g. '{example}'"
        )
    return decoded


_JSON_EXAMPLES = {
    "provider": '{"order": ["together"], "allow_fallbacks": true}',
    "channel_prompts": '{"C0123456789": "Answer like a pirate."}',
    "channel_models": '{"C0123456789": "qwen/qwen2.5-vl-72b-instruct"}',
}

# Lists from the environment are comma-separated (a JSON array works too); dicts are JSON objects.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]
JsonObject = Annotated[dict[str, Any], NoDecode, BeforeValidator(_json_object)]
JsonStrings = Annotated[dict[str, str], NoDecode, BeforeValidator(_json_object)]


def _shard_count(value: Any) -> Any:
    """`auto`, a number (from the environment: text), or empty for no sharding."""
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text == "auto":
            return "auto"
        if not text.isdigit():
            raise ValueError("must be a whole number of shards (1 or more), or auto")
        value = int(text)
    if isinstance(value, int) and value < 1:
        raise ValueError("must be a whole number of shards (1 or more), or auto")
    return value


ShardCount = Annotated[int | Literal["auto"] | None, BeforeValidator(_shard_count)]
ShardIds = Annotated[list[Annotated[int, Field(ge=0)]], NoDecode, BeforeValidator(_split_commas)]


class DiscordSettings(BaseModel):
    """Discord adapter options (the token is a secret: `DISCORD_TOKEN`)."""

    model_config = ConfigDict(extra="forbid")

    application_id: str = ""
    guild_ids: CommaList = Field(
        default_factory=list
    )  # sync commands here for instant availability
    allow_dms: bool = True
    # Sharding: unset runs one gateway connection for every guild; "auto" asks GET /gateway/bot.
    shard_count: ShardCount = None
    shard_ids: ShardIds = Field(default_factory=list)  # this process's shards; empty: all of them
    identify_window_seconds: float = Field(default=5.0, gt=0)  # Discord's; tests shorten it

    @model_validator(mode="after")
    def _shards_fit(self) -> DiscordSettings:
        if self.shard_ids and self.shard_count is None:
            raise ValueError(
                "shard_ids needs shard_count (a number, or auto): "
                "e.g. GLIMPSE_DISCORD__SHARD_COUNT=4 GLIMPSE_DISCORD__SHARD_IDS=0,1"
            )
        if isinstance(self.shard_count, int):
            outside = [i for i in self.shard_ids if i >= self.shard_count]
            if outside:
                raise ValueError(
                    f"shard_ids {outside} are not below shard_count {self.shard_count} "
                    f"(shard ids run from 0 to {self.shard_count - 1})"
                )
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError(f"shard_ids lists a shard twice ({self.shard_ids})")
        return self


class SuggestedPrompt(BaseModel):
    """One suggested prompt of Slack's assistant pane: the button's title, the message it sends."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=75)
    message: str = Field(min_length=1, max_length=2000)


# Slack's assistant pane offers no upload with a prompt, so each prompt asks about the next upload.
DEFAULT_SUGGESTED_PROMPTS = (
    SuggestedPrompt(title="Describe this image", message="Describe the image I'm about to upload."),
    SuggestedPrompt(
        title="Read the text in this screenshot",
        message="Read out the text in the screenshot I'm about to upload.",
    ),
    SuggestedPrompt(
        title="What's wrong in this error screenshot?",
        message="What's wrong in the error screenshot I'm about to upload?",
    ),
    SuggestedPrompt(title="What can you do?", message="What can you help me with?"),
)


class SlackSettings(BaseModel):
    """Slack adapter options (tokens are secrets: `SLACK_BOT_TOKEN`, `SLACK_SIGNING_SECRET`, `SLACK_APP_TOKEN`)."""

    model_config = ConfigDict(extra="forbid")

    command: str = "/ask"
    reset_command: str = "/reset"
    native_streaming: bool = True  # where the workspace allows it; chat.update otherwise
    update_interval_seconds: float = Field(default=1.0, gt=0)
    # Slack's agent/assistant surface (config/slack-manifest-agent.yaml): status, prompts, titles.
    assistant: bool = False
    suggested_prompts: list[SuggestedPrompt] = Field(
        default_factory=lambda: list(DEFAULT_SUGGESTED_PROMPTS), max_length=4
    )
    # The message shortcut's callback_id, as in the manifests; "" to not register it.
    shortcut: str = "ask_glimpse"


class InboxSettings(BaseModel):
    """The durable inbox: how long unfinished answers wait before another attempt, and its bounds."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    resume_after_seconds: float = Field(default=120.0, gt=0)  # open this long: answered again
    resume_within_seconds: float = Field(default=3600.0, gt=0)  # older than this: left alone
    max_attempts: int = Field(default=3, ge=1)  # then "I couldn't finish this answer"
    check_interval_seconds: float = Field(default=30.0, gt=0)  # how often to look for such work
    keep_hours: float = Field(default=48.0, gt=0)  # entries are pruned after this
    max_entries: int = Field(default=20_000, ge=1)  # and beyond this many, oldest first


class CatchUpSettings(BaseModel):
    """After downtime: answer what was sent to Glimpse while it was away (see README, After downtime)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    within_hours: float = Field(default=24.0, gt=0)  # conversations answered in this recently
    max_threads: int = Field(default=100, ge=1, le=1000)  # the most recent ones, at most
    max_messages: int = Field(default=50, ge=1, le=100)  # read per conversation
    answer_within_minutes: float = Field(default=15.0, gt=0)  # younger: answered; older: noticed
    offline_notice: bool = True  # older ones: one "I was offline" reply per conversation


class Settings(BaseSettings):
    """Everything an operator can set; read by `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="GLIMPSE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    # --- model ---
    model: str = DEFAULT_MODEL
    fallback_models: CommaList = Field(default_factory=list)
    provider: JsonObject = Field(
        default_factory=dict
    )  # OpenRouter provider preferences, passed through
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        validation_alias=AliasChoices("OPENROUTER_BASE_URL", "base_url"),
    )
    max_output_tokens: int = Field(default=1024, ge=16, le=65536)
    safety_margin_tokens: int = Field(default=64, ge=0, le=8192)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    context_length: int = Field(default=0, ge=0)  # 0: read from GET /models (4,096 if unreachable)
    images_per_request: int = Field(
        default=1, ge=1, le=16
    )  # Llama 3.2 Vision reads one image per request
    image_prompt_tokens: int = Field(
        default=1, ge=0
    )  # tokens one image costs in the prompt (<|image|> for Llama)
    request_timeout_seconds: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=10)
    http_referer: str = "https://github.com/glimpse-bot/glimpse"
    app_title: str = "Glimpse"
    channel_models: JsonStrings = Field(default_factory=dict)  # channel id -> model id
    admins: CommaList = Field(
        default_factory=list
    )  # user ids that may set a channel's model ("slack:U123" for one platform only)

    # --- prompts ---
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    channel_prompts: JsonStrings = Field(default_factory=dict)  # channel id -> system prompt

    # --- images ---
    image_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    image_max_pixels: int = Field(default=50_000_000, ge=10_000)  # decompression-bomb guard
    image_max_side: int = Field(default=1120, ge=64, le=8192)
    images_per_message: int = Field(default=4, ge=1, le=16)
    image_fetch_timeout_seconds: float = Field(default=15.0, gt=0)
    image_hosts: CommaList = Field(
        default_factory=list
    )  # extra trusted hosts (GLIMPSE_IMAGE_HOSTS)

    # --- files (text and PDFs; fetched from the same hosts as images) ---
    file_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    files_per_message: int = Field(default=4, ge=1, le=16)
    pdf_max_pages: int = Field(default=50, ge=1)  # later pages are not read (the user is told)
    pdf_timeout_seconds: float = Field(default=10.0, gt=0)  # then the PDF's worker is killed

    # --- memory ---
    store_url: str = (
        ""  # sqlite:///path or redis://host:port/db; empty: SQLite file in the data dir
    )
    data_dir: str = ""
    retention_days: int = Field(default=30, ge=0)  # 0 keeps turns forever
    history_turns: int = Field(default=200, ge=2)  # most turns loaded per request before budgeting
    summaries: bool = True  # fold turns that no longer fit into a model-written summary
    summary_share: float = Field(default=0.2, ge=0.05, le=0.5)  # of the prompt budget, at most

    # --- access and limits ---
    allow_users: CommaList = Field(default_factory=list)
    block_users: CommaList = Field(default_factory=list)
    allow_channels: CommaList = Field(
        default_factory=list
    )  # a thread is checked against its parent channel
    block_channels: CommaList = Field(default_factory=list)
    allow_workspaces: CommaList = Field(default_factory=list)  # Slack team ids, Discord guild ids
    block_workspaces: CommaList = Field(default_factory=list)
    allow_roles: CommaList = Field(default_factory=list)  # Discord role ids
    block_roles: CommaList = Field(default_factory=list)
    silent_refusals: bool = False  # True: refused users get no answer at all
    user_messages_per_minute: int = Field(default=10, ge=0)  # 0: no limit
    max_concurrent_answers: int = Field(default=64, ge=1)  # model calls at once, per process
    busy_after_seconds: float = Field(default=20.0, ge=0)  # a longer wait for one: "I'm busy"
    # With Redis: how long a conversation stays locked after the process answering in it died.
    lease_ttl_seconds: float = Field(default=10.0, gt=0)

    # --- costs (US dollars per UTC day; 0: no budget) ---
    daily_budget_user_usd: float = Field(default=0.0, ge=0)
    daily_budget_channel_usd: float = Field(default=0.0, ge=0)  # a thread counts in its channel
    daily_budget_workspace_usd: float = Field(default=0.0, ge=0)

    # --- operations (`glimpse run`) ---
    health_port: int = Field(default=8080, ge=0, le=65535)  # /healthz, /readyz, /metrics; 0: off
    health_host: str = "0.0.0.0"
    shutdown_timeout_seconds: float = Field(default=20.0, ge=0)  # for answers in flight on SIGTERM

    # --- platforms ---
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    catch_up: CatchUpSettings = Field(default_factory=CatchUpSettings)

    @field_validator("store_url")
    @classmethod
    def _store_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "redis://", "rediss://", "memory://")):
            raise ValueError(
                "must start with sqlite:/// or redis:// (or be empty for the default SQLite file)"
            )
        return value

    def system_prompt_for(self, channel: str) -> str:
        return self.channel_prompts.get(channel, self.system_prompt)

    def model_for(self, channel: str) -> str:
        """The configured model of a channel (pass a thread's parent), else the default model."""
        return self.channel_models.get(channel) or self.model

    def is_admin(self, platform: str, user_id: str) -> bool:
        """Whether `admins` names this user: a plain id, or `platform:id` for one platform."""
        return bool(user_id) and (user_id in self.admins or f"{platform}:{user_id}" in self.admins)

    def named_system_prompts(self) -> list[tuple[str, str]]:
        """Every system prompt the service may send, named for the operator."""
        prompts = [("the system prompt", self.system_prompt)]
        prompts += [
            (f"channel {channel}'s prompt", text) for channel, text in self.channel_prompts.items()
        ]
        return prompts

    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{Path(self.data_dir or default_data_dir()) / 'glimpse.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _CONFIG_PATH.get("path")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


# The file `settings_customise_sources` reads; set only by `load_settings`.
_CONFIG_PATH: dict[str, str | None] = {"path": None}


class Secrets(BaseSettings):
    """Tokens and keys, read from the environment only and never logged."""

    model_config = SettingsConfigDict(extra="ignore", env_prefix="")

    openrouter_api_key: SecretStr | None = None
    discord_token: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    discord_api_base: str = ""
    discord_gateway_url: str = ""
    slack_api_url: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "glimpse"


def load_settings(config_path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (`--config` or `GLIMPSE_CONFIG`) under the environment; raise ConfigError."""
    path = str(config_path) if config_path else os.environ.get("GLIMPSE_CONFIG") or None
    if path:
        _check_toml(Path(path))
    _CONFIG_PATH["path"] = path
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    except SettingsError as exc:
        raise ConfigError(_undecodable(exc)) from None
    finally:
        _CONFIG_PATH["path"] = None


def load_secrets() -> Secrets:
    try:
        return Secrets()
    except ValidationError as exc:
        raise ConfigError(_describe(exc, None)) from None


def _check_toml(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (set by --config or GLIMPSE_CONFIG)")
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


_SECRET_NAMES = {
    "openrouter_api_key",
    "discord_token",
    "slack_bot_token",
    "slack_signing_secret",
    "slack_app_token",
}


def _undecodable(exc: SettingsError) -> str:
    """The line for an environment value pydantic-settings could not decode as JSON."""
    found = re.search(r'field "(\w+)"', str(exc))
    name = f"GLIMPSE_{found.group(1).upper()}" if found else "a GLIMPSE_ variable"
    return (
        f"invalid configuration in the environment: {name} must be a JSON object, "
        f'e.g. {name}=\'{{"key": "value"}}\' (or set its parts as {name}__KEY=value)'
    )


def _setting_names() -> list[str]:
    """Every setting a config file may hold: top-level names and `discord.x` / `slack.x`."""
    names = list(Settings.model_fields)
    for section, model in (("discord", DiscordSettings), ("slack", SlackSettings)):
        names += [f"{section}.{name}" for name in model.model_fields]
    return names


def _unknown(name: str) -> str:
    """The line for a name that is no setting: a secret in the wrong place, or a suggestion."""
    if name.lower() in _SECRET_NAMES:
        return f"{name}: secrets are read from the environment only, not from the config file"
    close = difflib.get_close_matches(name.lower(), _setting_names(), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "see config/glimpse.example.toml for the names"
    return f"{name}: unknown setting ({hint})"


def _describe(exc: ValidationError, path: str | None) -> str:
    """One line naming each wrong value, what is wrong and what is allowed; never a secret value."""
    problems = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "(settings)"
        if error["type"] == "extra_forbidden":
            problems.append(_unknown(name))
            continue
        shown = (
            ""
            if any(s in name.lower() for s in ("token", "key", "secret"))
            else f" (got {error.get('input')!r})"
        )
        problems.append(f"{name}: {error['msg'].removeprefix('Value error, ')}{shown}")
    where = f" in {path} or the environment" if path else " in the environment"
    return f"invalid configuration{where}: " + "; ".join(problems)
