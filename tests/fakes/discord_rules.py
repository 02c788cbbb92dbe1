"""What Discord's REST API documents for commands, interaction responses and follow-ups: the fake refuses the rest.

Each function returns why a body is invalid (the fake answers 400, code 50035 "Invalid Form Body"),
or None when Discord would take it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "CHAT_INPUT",
    "MESSAGE_COMMAND",
    "MODAL_RESPONSE",
    "callback_problem",
    "commands_problem",
    "edit_problem",
    "followup_problem",
]

CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND, PRIMARY_ENTRY_POINT = 1, 2, 3, 4
GUILD_INSTALL, USER_INSTALL = 0, 1  # integration_types
GUILD, BOT_DM, PRIVATE_CHANNEL = 0, 1, 2  # contexts
MODAL_RESPONSE = 9

# The application command fields a create or bulk overwrite takes (the object's own `id` included:
# bulk overwrite matches existing commands by it).
COMMAND_FIELDS = frozenset(
    {
        "id",
        "name",
        "name_localizations",
        "description",
        "description_localizations",
        "options",
        "default_member_permissions",
        "dm_permission",
        "default_permission",
        "integration_types",
        "contexts",
        "type",
        "nsfw",
        "handler",
    }
)
OPTION_FIELDS = frozenset(
    {
        "type",
        "name",
        "name_localizations",
        "description",
        "description_localizations",
        "required",
        "choices",
        "options",
        "channel_types",
        "min_value",
        "max_value",
        "min_length",
        "max_length",
        "autocomplete",
    }
)
CHAT_INPUT_NAME = re.compile(r"^[-_'\w]{1,32}$")
# Callback types: PONG, CHANNEL_MESSAGE_WITH_SOURCE, DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
# DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE, APPLICATION_COMMAND_AUTOCOMPLETE_RESULT, MODAL,
# PREMIUM_REQUIRED (deprecated), LAUNCH_ACTIVITY.
CALLBACK_TYPES = frozenset({1, 4, 5, 6, 7, 8, 9, 10, 12})
MESSAGE_DATA_FIELDS = frozenset(
    {"tts", "content", "embeds", "allowed_mentions", "flags", "components", "attachments", "poll"}
)
IS_COMPONENTS_V2 = 1 << 15
# SUPPRESS_EMBEDS, EPHEMERAL, SUPPRESS_NOTIFICATIONS, IS_VOICE_MESSAGE, IS_COMPONENTS_V2
MESSAGE_FLAGS = (1 << 2) | (1 << 6) | (1 << 12) | (1 << 13) | IS_COMPONENTS_V2
MODAL_FIELDS = frozenset({"custom_id", "title", "components"})
MODAL_COMPONENT_TYPES = frozenset({1, 10, 18})  # action row (of text inputs), text display, label
FOLLOWUP_FIELDS = frozenset(
    {
        "content",
        "username",
        "avatar_url",
        "tts",
        "embeds",
        "allowed_mentions",
        "components",
        "attachments",
        "flags",
        "thread_name",
        "applied_tags",
        "poll",
    }
)
# `tts` is not an edit field, but discord.py sends it with every message body and Discord ignores it.
EDIT_FIELDS = frozenset(
    {"content", "embeds", "flags", "allowed_mentions", "components", "attachments", "poll", "tts"}
)
CONTENT_LIMIT = 2000


def commands_problem(commands: Any) -> str | None:
    """A bulk overwrite's body: a list of commands of documented shapes, names unique per type.

    `integration_types` and `contexts` apply to global commands only; a guild's copy keeps none.
    """
    if not isinstance(commands, list):
        return "body: expected a list of application commands"
    seen: set[tuple[int, str]] = set()
    for index, command in enumerate(commands):
        problem = _command_problem(command)
        if problem is not None:
            return f"{index}: {problem}"
        key = (command.get("type") or CHAT_INPUT, command["name"])
        if key in seen:
            return f"{index}.name: application command names must be unique per type"
        seen.add(key)
    return None


def callback_problem(body: Any) -> str | None:
    """An interaction response: a documented type, and data of the shape that type takes."""
    if not isinstance(body, dict) or set(body) - {"type", "data"}:
        return "body: only type and data"
    kind = body.get("type")
    if kind not in CALLBACK_TYPES:
        return f"type: {kind!r} is not an interaction callback type"
    data = body.get("data") or {}
    if kind == MODAL_RESPONSE:
        return _modal_problem(data)
    if kind == 8:
        return None if set(data) <= {"choices"} else "data: autocomplete takes only choices"
    if unknown := set(data) - MESSAGE_DATA_FIELDS:
        return f"data: undocumented fields {sorted(unknown)}"
    return _message_problem(data)


def followup_problem(body: Any) -> str | None:
    """Execute webhook (an interaction follow-up)."""
    if not isinstance(body, dict):
        return "body: expected an object"
    if unknown := set(body) - FOLLOWUP_FIELDS:
        return f"undocumented fields {sorted(unknown)}"
    return _message_problem(body)


def edit_problem(body: Any) -> str | None:
    """Edit webhook message (an interaction's original response or a follow-up)."""
    if not isinstance(body, dict):
        return "body: expected an object"
    if unknown := set(body) - EDIT_FIELDS:
        return f"undocumented fields {sorted(unknown)}"
    return _message_problem(body)


# --- one command ---


def _command_problem(command: Any) -> str | None:
    if not isinstance(command, dict):
        return "expected an object"
    if unknown := set(command) - COMMAND_FIELDS:
        return f"undocumented fields {sorted(unknown)}"
    kind = command.get("type") or CHAT_INPUT
    if kind not in (CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND, PRIMARY_ENTRY_POINT):
        return f"type: {kind!r} is not an application command type"
    name = command.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        return "name: 1 to 32 characters"
    if kind == CHAT_INPUT:
        if not CHAT_INPUT_NAME.match(name) or name != name.lower():
            return "name: a slash command's name is lower case, without spaces"
        if not 1 <= len(command.get("description") or "") <= 100:
            return "description: 1 to 100 characters"
        if (problem := _options_problem(command.get("options") or [])) is not None:
            return problem
    if kind in (USER_COMMAND, MESSAGE_COMMAND):
        if command.get("description"):
            return "description: must be empty for user and message commands"
        if command.get("options"):
            return "options: user and message commands take none"
    for field, allowed in (
        ("integration_types", {GUILD_INSTALL, USER_INSTALL}),
        ("contexts", {GUILD, BOT_DM, PRIVATE_CHANNEL}),
    ):
        values = command.get(field)
        if values is None:
            continue
        if not isinstance(values, list) or not values or not set(values) <= allowed:
            return f"{field}: a non-empty list of {sorted(allowed)}"
    return None


def _options_problem(options: list[Any]) -> str | None:
    for index, option in enumerate(options):
        if not isinstance(option, dict) or set(option) - OPTION_FIELDS:
            return f"options.{index}: undocumented fields"
        if not 1 <= len(option.get("description") or "") <= 100:
            return f"options.{index}.description: 1 to 100 characters"
    return None


# --- messages and modals ---


def _message_problem(data: dict[str, Any]) -> str | None:
    flags = int(data.get("flags") or 0)
    if flags & ~MESSAGE_FLAGS:
        return f"flags: {flags} sets flags a message cannot be sent with"
    if flags & IS_COMPONENTS_V2 and (data.get("content") or data.get("embeds") or data.get("poll")):
        return "content, embeds and poll: not with IS_COMPONENTS_V2 (use Text Display components)"
    if len(data.get("content") or "") > CONTENT_LIMIT:
        return f"content: at most {CONTENT_LIMIT} characters"
    return None


def _modal_problem(data: dict[str, Any]) -> str | None:
    if set(data) != MODAL_FIELDS:
        return f"data: a modal takes exactly {sorted(MODAL_FIELDS)}"
    if not 1 <= len(data["title"]) <= 45:
        return "data.title: 1 to 45 characters"
    components = data["components"]
    if not 1 <= len(components) <= 5:
        return "data.components: 1 to 5"
    if any(c.get("type") not in MODAL_COMPONENT_TYPES for c in components):
        return "data.components: action rows, labels or text displays only"
    return None
