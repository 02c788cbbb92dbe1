"""The fake Slack's assistant.threads.* methods, and the assistant, agent and shortcut payloads Slack sends."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

__all__ = [
    "MAX_PROMPTS",
    "AssistantThreadsApi",
    "app_home_opened",
    "assistant_thread_started",
    "context_changed",
    "shortcut_body",
    "shortcut_payload",
]

MAX_PROMPTS = 4  # "up to four suggested prompts" (assistant.threads.setSuggestedPrompts)
# Each method's documented arguments (token travels in the Authorization header).
REQUIRED = {
    "assistant.threads.setStatus": {"channel_id", "thread_ts", "status"},
    "assistant.threads.setSuggestedPrompts": {"channel_id", "prompts"},
    "assistant.threads.setTitle": {"channel_id", "thread_ts", "title"},
}
OPTIONAL = {
    "assistant.threads.setStatus": {"loading_messages", "icon_emoji", "icon_url", "username"},
    "assistant.threads.setSuggestedPrompts": {"thread_ts", "title"},
    "assistant.threads.setTitle": set(),
}
SCOPES = {  # setStatus takes chat:write (or assistant:write, for now); the others assistant:write
    "assistant.threads.setSuggestedPrompts": "assistant:write",
    "assistant.threads.setTitle": "assistant:write",
}
APP_ID = "A0GLIMPSE"


class AssistantThreadsApi:
    """Mixed into FakeSlack: the three methods, validating arguments as Slack documents them."""

    def _m_assistant_threads_setStatus(self, args: dict[str, Any]) -> dict[str, Any]:
        refusal = _refusal("assistant.threads.setStatus", args)
        if refusal is None and not isinstance(args["status"], str):
            refusal = "invalid_arguments"
        loading = args.get("loading_messages")
        if refusal is None and loading is not None:
            if not isinstance(loading, list) or len(loading) > 10:
                refusal = "invalid_arguments"
        return {"ok": False, "error": refusal} if refusal else {"ok": True}

    def _m_assistant_threads_setSuggestedPrompts(self, args: dict[str, Any]) -> dict[str, Any]:
        refusal = _refusal("assistant.threads.setSuggestedPrompts", args)
        if refusal is None and not _valid_prompts(args["prompts"]):
            refusal = "invalid_arguments"
        return {"ok": False, "error": refusal} if refusal else {"ok": True}

    def _m_assistant_threads_setTitle(self, args: dict[str, Any]) -> dict[str, Any]:
        refusal = _refusal("assistant.threads.setTitle", args)
        if refusal is None and not str(args["title"]).strip():
            refusal = "invalid_arguments"
        return {"ok": False, "error": refusal} if refusal else {"ok": True}


def _refusal(method: str, args: dict[str, Any]) -> str | None:
    """invalid_arguments for a missing required or an undocumented argument; channel_not_found for a bad id."""
    given = set(args) - {"token"}
    if not REQUIRED[method] <= given or given - REQUIRED[method] - OPTIONAL[method]:
        return "invalid_arguments"
    if not str(args["channel_id"]).startswith(("D", "C", "G")):
        return "channel_not_found"
    if "thread_ts" in args and not _is_ts(args["thread_ts"]):
        return "invalid_thread_ts"
    return None


def _valid_prompts(prompts: Any) -> bool:
    if isinstance(prompts, str):  # a form-encoded call sends JSON text
        try:
            prompts = json.loads(prompts)
        except ValueError:
            return False
    if not isinstance(prompts, list) or not 1 <= len(prompts) <= MAX_PROMPTS:
        return False
    return all(
        isinstance(p, dict)
        and set(p) == {"title", "message"}
        and all(isinstance(v, str) and v for v in p.values())
        for p in prompts
    )


def _is_ts(value: Any) -> bool:
    seconds, dot, micros = str(value).partition(".")
    return bool(dot) and seconds.isdigit() and micros.isdigit()


# --- what Slack sends to the app ---


def assistant_thread_started(user: str, channel: str, thread_ts: str) -> dict[str, Any]:
    """The assistant view's event when a user opens a new thread in the pane."""
    return {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": user,
            "context": {"channel_id": "C0GENERAL1", "team_id": "T0FAKE001"},
            "channel_id": channel,
            "thread_ts": thread_ts,
        },
        "event_ts": f"{time.time():.6f}",
    }


def context_changed(user: str, channel: str, thread_ts: str) -> dict[str, Any]:
    event = assistant_thread_started(user, channel, thread_ts)
    return {**event, "type": "assistant_thread_context_changed"}


def app_home_opened(user: str, channel: str, *, tab: str = "messages") -> dict[str, Any]:
    """What the agent view sends when a user opens the app's Messages tab (or its Home tab)."""
    return {
        "type": "app_home_opened",
        "user": user,
        "channel": channel,
        "tab": tab,
        "event_ts": f"{time.time():.6f}",
    }


def shortcut_payload(
    message: dict[str, Any],
    *,
    user: str,
    channel: str,
    response_url: str,
    callback_id: str = "ask_glimpse",
    team_id: str = "T0FAKE001",
) -> dict[str, Any]:
    """A message shortcut's `message_action` payload, as Slack sends it (form field `payload`)."""
    return {
        "type": "message_action",
        "token": "legacy-verification-token",
        "action_ts": f"{time.time():.6f}",
        "team": {"id": team_id, "domain": "glimpse-test"},
        "user": {"id": user, "username": "alice", "team_id": team_id, "name": "alice"},
        "channel": {"id": channel, "name": "general"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().int % 10**12}.fake",
        "response_url": response_url,
        "message_ts": message["ts"],
        "message": {k: v for k, v in message.items() if k not in ("channel", "channel_type")},
        "api_app_id": APP_ID,
    }


def shortcut_body(message: dict[str, Any], **options: Any) -> str:
    """The shortcut as the form-encoded body Slack POSTs to the request URL."""
    return urlencode({"payload": json.dumps(shortcut_payload(message, **options))})
