"""The `/ask question [image]`, `/reset` and `/model [name]` application commands, and their sync.

`image` keeps its name (people and the README know it) but takes any file: the core reads text,
logs, code and PDFs as well as images.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import discord
from discord import app_commands

from adapters.discord_sink import (
    NO_MENTIONS,
    DiscordSink,
    TargetFactory,
    in_channel,
    reply_to,
    thread_on,
)
from adapters.discord_translate import (
    DM_WORKSPACE,
    PLATFORM,
    ReplyChains,
    attachment_refs,
    author_roles,
    dm_key,
    root_key,
    thread_name,
)
from bot.access import REFUSAL, AccessPolicy
from bot.config import Settings
from bot.conversations import Conversations
from bot.messages import ConversationKey, IncomingMessage

__all__ = ["SlashCommands", "build_tree", "sync_commands"]

log = logging.getLogger("glimpse.discord")

QUESTION_PREVIEW_CHARS = 1800
DMS_OFF = "I don't answer direct messages here. Ask me in a server channel instead."
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

    async def ask(
        self, interaction: discord.Interaction, question: str, image: discord.Attachment | None
    ) -> None:
        """Acknowledge at once, show the question, then answer in a new thread (or in place)."""
        if interaction.guild_id is None and not self._settings.discord.allow_dms:
            await interaction.response.send_message(DMS_OFF, ephemeral=True)
            return
        try:
            await interaction.response.defer(thinking=True)  # Discord's 3 s deadline
        except discord.HTTPException as exc:  # already acknowledged (a replay) or expired
            log.info("cannot acknowledge /ask %s: %s", interaction.id, exc)
            return
        original = await interaction.edit_original_response(
            content=_question_header(question, image), allowed_mentions=NO_MENTIONS
        )
        incoming, target = self._incoming(interaction, original, question, image)
        on_posted = None
        if interaction.guild_id is not None:  # replies to any of these continue the conversation
            root = int(incoming.key.thread)
            self._chains.remember(original.id, root)
            on_posted = partial(self._chains.remember, root_id=root)
        sink = DiscordSink(target, quiet=_ephemeral(interaction), on_posted=on_posted)
        try:
            await self._conversations.handle(incoming, sink)
        finally:
            await sink.close()
        if not sink.started:  # refused, rate-limited, a duplicate...: no question left hanging
            await _quietly(interaction.delete_original_response())

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

    def _incoming(
        self,
        interaction: discord.Interaction,
        original: discord.Message,
        question: str,
        image: discord.Attachment | None,
    ) -> tuple[IncomingMessage, TargetFactory]:
        images, files, others = attachment_refs([image] if image is not None else [])
        name = thread_name(question, images, files)
        key, parent, target = self._place(interaction, original, name)
        incoming = IncomingMessage(
            key=key,
            message_id=str(interaction.id),
            author_id=str(interaction.user.id),
            author_name=interaction.user.display_name,
            text=question,
            images=images,
            files=files,
            other_files=others,
            author_roles=author_roles(interaction.user),
            parent_channel=parent,
            is_direct=interaction.guild_id is None,
            shared=interaction.guild_id is not None,  # a guild thread: several people may talk
        )
        return incoming, target

    def _place(
        self, interaction: discord.Interaction, original: discord.Message, name: str
    ) -> tuple[ConversationKey, str | None, TargetFactory]:
        """The conversation and the answer's place: the thread or DM asked in, else a new thread."""
        channel = interaction.channel
        if interaction.guild_id is None:
            return (
                dm_key(interaction.channel_id or original.channel.id),
                None,
                in_channel(original.channel),
            )
        if isinstance(channel, discord.Thread):
            return (
                root_key(interaction.guild_id, channel.id),
                str(channel.parent_id),
                in_channel(channel),
            )
        key = root_key(interaction.guild_id, original.id)
        parent = str(interaction.channel_id)
        if isinstance(channel, discord.TextChannel):
            return key, parent, thread_on(original, name)
        return key, parent, reply_to(original)

    def _reset_key(
        self, interaction: discord.Interaction
    ) -> tuple[ConversationKey | None, str | None]:
        channel = interaction.channel
        if interaction.guild_id is None and interaction.channel_id is not None:
            return dm_key(interaction.channel_id), None
        if interaction.guild_id is not None and isinstance(channel, discord.Thread):
            return root_key(interaction.guild_id, channel.id), str(channel.parent_id)
        return None, None


def build_tree(
    client: discord.Client, commands: SlashCommands
) -> app_commands.CommandTree[discord.Client]:
    """The command tree with `/ask`, `/reset` and `/model`."""
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)

    @tree.command(name="ask", description="Ask Glimpse a question, optionally about a file")
    @app_commands.describe(
        question="What you want to know", image="An image, a text file or a PDF to ask about"
    )
    async def ask(
        interaction: discord.Interaction, question: str, image: discord.Attachment | None = None
    ) -> None:
        await commands.ask(interaction, question, image)

    @tree.command(name="reset", description="Make Glimpse forget this thread's conversation")
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

    return tree


async def sync_commands(
    tree: app_commands.CommandTree[discord.Client], guild_ids: Sequence[str]
) -> None:
    """Register the commands: in the listed guilds (available at once), else globally (may take a while)."""
    try:
        if not guild_ids:
            synced = await tree.sync()
            log.info("registered %d commands globally", len(synced))
            return
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


def _model_place(interaction: discord.Interaction) -> tuple[str, str]:
    """(workspace, channel) whose model `/model` shows or sets: a thread's parent, a DM itself."""
    channel_id = interaction.channel_id or 0
    if interaction.guild_id is None:
        return DM_WORKSPACE, str(channel_id)
    channel = interaction.channel
    if isinstance(channel, discord.Thread) and channel.parent_id is not None:
        return str(interaction.guild_id), str(channel.parent_id)
    return str(interaction.guild_id), str(channel_id)


def _question_header(question: str, image: discord.Attachment | None) -> str:
    """The public message an `/ask` answer hangs from: the question, quoted."""
    text = (
        question
        if len(question) <= QUESTION_PREVIEW_CHARS
        else question[: QUESTION_PREVIEW_CHARS - 1] + "…"
    )
    quoted = "\n".join(f"> {line}" for line in text.splitlines() or [""])
    return quoted + (f"\n📎 {image.filename}" if image is not None else "")


def _ephemeral(interaction: discord.Interaction) -> Callable[[str], Awaitable[None]]:
    """Notices no answer followed (refusals, rate limits) reach only the person who asked."""

    async def send(text: str) -> None:
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    return send


async def _quietly(action: Awaitable[object]) -> None:
    try:
        await action
    except discord.HTTPException as exc:
        log.debug("cleanup after /ask failed: %s", exc)
