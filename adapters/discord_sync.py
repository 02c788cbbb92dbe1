"""Application-command sync once per fleet: the process that claims the command set's hash registers it."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence

import discord
from discord import app_commands

from adapters.discord_commands import sync_commands
from bot.fleet import Fleet

__all__ = ["command_set_hash", "sync_once"]

log = logging.getLogger("glimpse.discord")

SYNC_CLAIM_SECONDS = 24 * 3600  # after a day a process registers the same set again


def command_set_hash(
    tree: app_commands.CommandTree[discord.Client], guild_ids: Sequence[str]
) -> str:
    """A short hash of what a sync sends: the application, the guilds and every command's payload."""
    commands = sorted(
        (command.to_dict(tree) for command in tree.get_commands()),
        key=lambda payload: (payload.get("type", 1), payload["name"]),
    )
    described = {
        "application": str(tree.client.application_id),
        "guilds": sorted(guild_ids),
        "commands": commands,
    }
    encoded = json.dumps(described, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


async def sync_once(
    tree: app_commands.CommandTree[discord.Client], guild_ids: Sequence[str], fleet: Fleet
) -> bool:
    """Register the commands unless another process of the fleet did (or is doing) so; True if this one did."""
    claim = f"discord:commands:{command_set_hash(tree, guild_ids)}"
    if not await fleet.claim(claim, SYNC_CLAIM_SECONDS):
        log.info("commands already registered by another Glimpse process (%s)", claim)
        return False
    if not await sync_commands(tree, guild_ids):
        await fleet.release(claim)  # another process (or the next start) tries again
        return False
    return True
