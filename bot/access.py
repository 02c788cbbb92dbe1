"""Who may talk to the bot: allow and block lists by user, channel, workspace and role."""

from __future__ import annotations

from bot.config import Settings
from bot.messages import IncomingMessage

__all__ = ["AccessPolicy"]

REFUSAL = "Sorry, I'm not available to you here."


class AccessPolicy:
    """Block lists win over allow lists; an empty allow list allows everyone."""

    def __init__(self, settings: Settings) -> None:
        self._allow_users = frozenset(settings.allow_users)
        self._block_users = frozenset(settings.block_users)
        self._allow_channels = frozenset(settings.allow_channels)
        self._block_channels = frozenset(settings.block_channels)
        self._allow_workspaces = frozenset(settings.allow_workspaces)
        self._block_workspaces = frozenset(settings.block_workspaces)
        self._allow_roles = frozenset(settings.allow_roles)
        self._block_roles = frozenset(settings.block_roles)

    def refusal(self, message: IncomingMessage) -> str | None:
        """Why this message may not be answered, for the operator's log; None when it may."""
        user = message.author_id
        channel = message.parent_channel or message.key.channel
        workspace = message.key.workspace
        roles = frozenset(message.author_roles)
        if user in self._block_users:
            return f"user {user} is blocked"
        if roles & self._block_roles:
            return f"user {user} has a blocked role"
        if (
            (self._allow_users or self._allow_roles)
            and user not in self._allow_users
            and not (roles & self._allow_roles)
        ):
            return f"user {user} is in neither allow_users nor allow_roles"
        if message.is_direct:
            return None
        if channel in self._block_channels or message.key.channel in self._block_channels:
            return f"channel {channel} is blocked"
        if self._allow_channels and channel not in self._allow_channels:
            return f"channel {channel} is not in allow_channels"
        if workspace in self._block_workspaces:
            return f"workspace {workspace} is blocked"
        if self._allow_workspaces and workspace not in self._allow_workspaces:
            return f"workspace {workspace} is not in allow_workspaces"
        return None
