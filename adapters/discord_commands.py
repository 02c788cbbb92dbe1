"""The `/ask question [image]`, `/reset` and `/model [name]` application commands, and their sync.

`/ask` and `/reset` can be installed to a user's account as well as to a server, and work in
servers, the bot's DMs and DMs between people (`adapters.discord_interactions` answers where the
bot cannot post); so do the message menus of `adapters.discord_menus`.

`image` keeps its name (people and the README know it) but takes any file: the core reads text,
logs, code and PDFs as well as images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord
from discord import app_commands

from adapters.discord_interactions import (
    DMS_OFF,
    InteractionAnswers,
    bot_can_post,
    place_key,
)
from adapters.discord_menus import MessageMenus, add_menus
from adapters.discord_sink import NO_MENTIONS
from adapters.discord_translate import (
    DM_WORKSPACE,
    PLATFORM,
    ReplyChains,
    attachment_refs,
    author_roles,
    dm_key,
    root_key,
)
from bot.access import REFUSAL, AccessPolicy
from bot.config import Settings
from bot.conversations import Conversations
from bot.messages import ConversationKey, IncomingMessage

__all__ = ["SlashCommands", "build_tree", "sync_commands"]

log = logging.getLogger("glimpse.discord")

RESET_WHERE = "Use /reset inside a thread I'm answering in, or in our direct messages."
RESET_DONE = "Done: I've forgotten this conversation. Your next message starts a new one."
RESET_FAILED = "I couldn't reach my memory just now, so nothing was forgotten. Please try again."
CLEAR_MODEL = "default"  # `/model default`: back to the configured model
MAX_CHOICES = 25  # Discord shows at most this many autocomplete choices


class SlashCommands:
    """What `/ask`, `/reset` and `/model` do; the command tree only forwards to these."""

    def __init__(
        self, conversations: Conversations, settings: Settings, chains: ReplyChains
    ) -> None:
        self._conversations = conversations
        self._settings = settings
        self._chains = chains
        self._policy = AccessPolicy(settings)
        self.answers = InteractionAnswers(conversations, settings, chains)

    async def ask(
        self, interaction: discord.Interaction, question: str, image: discord.Attachment | None
    ) -> None:
        """Acknowledge at once, show the question, then answer in a new thread (or in place)."""
        await self.answers.answer(
            interaction,
            question,
            about=f"📎 {image.filename}" if image is not None else None,
            attachments=attachment_refs([image] if image is not None else []),
        )

    async def reset(self, interaction: discord.Interaction) -> None:
        """Forget the conversation of the thread or DM the command was used in."""
        key, parent = self._reset_key(interaction)
        if key is None:
            await interaction.response.send_message(RESET_WHERE, ephemeral=True)
            return
        probe = IncomingMessage(
            key=key,
            message_id=str(interaction.id),
            author_id=str(interaction.user.id),
            text="",
            author_roles=author_roles(interaction.user),
            parent_channel=parent,
            is_direct=interaction.guild_id is None,
        )
        refusal = self._policy.refusal(probe)
        if refusal is not None:
            log.info("refused /reset %s: %s", interaction.id, refusal)
            if not self._settings.silent_refusals:
                await interaction.response.send_message(REFUSAL, ephemeral=True)
            return
        done = await self._conversations.reset(key)
        await interaction.response.send_message(
            RESET_DONE if done else RESET_FAILED, ephemeral=True
        )

    async def model(self, interaction: discord.Interaction, name: str | None) -> None:
        """Show the channel's model, or set it (`default` clears); a thread's is its parent's.

        Allowed to `admins` and to members with Manage Server; the core decides and says why not.
        """
        if interaction.guild_id is None and not self._settings.discord.allow_dms:
            await interaction.response.send_message(DMS_OFF, ephemeral=True)
            return
        workspace, channel = _model_place(interaction)
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)  # /models may be slow
        except discord.HTTPException as exc:  # already acknowledged (a replay) or expired
            log.info("cannot acknowledge /model %s: %s", interaction.id, exc)
            return
        if name is None or not name.strip():
            reply = await self._conversations.describe_channel_model(PLATFORM, workspace, channel)
        else:
            chosen = name.strip()
            reply = await self._conversations.set_channel_model(
                PLATFORM,
                workspace,
                channel,
                None if chosen.lower() == CLEAR_MODEL else chosen,
                user_id=str(interaction.user.id),
                is_manager=interaction.guild_id is not None
                and interaction.permissions.manage_guild,
            )
        await interaction.followup.send(reply, ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def model_choices(self, current: str) -> list[app_commands.Choice[str]]:
        """Autocomplete for `/model name`: vision models whose id contains what was typed."""
        typed = current.strip().lower()
        ids = [CLEAR_MODEL, *await self._conversations.vision_models()]
        found = [model for model in ids if typed in model.lower()]
        return [app_commands.Choice(name=model, value=model) for model in found[:MAX_CHOICES]]

    def _reset_key(
        self, interaction: discord.Interaction
    ) -> tuple[ConversationKey | None, str | None]:
        channel = interaction.channel
        if not bot_can_post(interaction):  # a place only the user installed Glimpse for
            parent = interaction.channel_id if interaction.guild_id is not None else None
            return place_key(interaction), str(parent) if parent is not None else None
        if interaction.guild_id is None and interaction.channel_id is not None:
            return dm_key(interaction.channel_id), None
        if interaction.guild_id is not None and isinstance(channel, discord.Thread):
            return root_key(interaction.guild_id, channel.id), str(channel.parent_id)
        return None, None


def build_tree(
    client: discord.Client, commands: SlashCommands
) -> app_commands.CommandTree[discord.Client]:
    """The command tree with `/ask`, `/reset`, `/model` and the two message menus."""
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)

    @tree.command(name="ask", description="Ask Glimpse a question, optionally about a file")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.describe(
        question="What you want to know", image="An image, a text file or a PDF to ask about"
    )
    async def ask(
        interaction: discord.Interaction, question: str, image: discord.Attachment | None = None
    ) -> None:
        await commands.ask(interaction, question, image)

    @tree.command(name="reset", description="Make Glimpse forget this thread's conversation")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def reset(interaction: discord.Interaction) -> None:
        await commands.reset(interaction)

    @tree.command(name="model", description="Show or change the model Glimpse uses in this channel")
    @app_commands.describe(
        name="A model id to switch to, or `default`; leave empty to see the current one"
    )
    async def model(interaction: discord.Interaction, name: str | None = None) -> None:
        await commands.model(interaction, name)

    @model.autocomplete("name")
    async def model_names(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await commands.model_choices(current)

    add_menus(tree, MessageMenus(commands.answers))
    return tree


async def sync_commands(
    tree: app_commands.CommandTree[discord.Client], guild_ids: Sequence[str]
) -> bool:
    """Register the commands: in the listed guilds (available at once), else globally (may take a while).

    False (and a warning) if Discord refused.
    """
    try:
        if not guild_ids:
            synced = await tree.sync()
            log.info("registered %d commands globally", len(synced))
            return True
        for guild_id in guild_ids:
            guild = discord.Object(id=int(guild_id))
            tree.copy_global_to(guild=guild)
            synced = await tree.sync(guild=guild)
            log.info("registered %d commands in guild %s", len(synced), guild_id)
    except (discord.HTTPException, ValueError) as exc:  # ValueError: a guild id that is no number
        log.warning(
            "could not register /ask, /reset and /model (%s); invite the bot with the applications.commands scope "
            "(the URL `glimpse doctor` prints). Mentions still work.",
            exc,
        )
        return False
    return True


def _model_place(interaction: discord.Interaction) -> tuple[str, str]:
    """(workspace, channel) whose model `/model` shows or sets: a thread's parent, a DM itself."""
    channel_id = interaction.channel_id or 0
    if interaction.guild_id is None:
        return DM_WORKSPACE, str(channel_id)
    channel = interaction.channel
    if isinstance(channel, discord.Thread) and channel.parent_id is not None:
        return str(interaction.guild_id), str(channel.parent_id)
    return str(interaction.guild_id), str(channel_id)
