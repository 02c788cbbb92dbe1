"""The message menus: "Describe this image" answers at once, "Ask Glimpse about this image" asks for the question in a modal.

Both work on any message with an image (an attachment, an image embed, or a forward of one), in
servers and, for a user who installed Glimpse, anywhere: the message comes resolved in the
interaction, so nothing needs fetching from a channel the bot cannot read.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands

from adapters.discord_interactions import InteractionAnswers
from adapters.discord_quotes import reply_quote
from bot.messages import QuotedMessage

__all__ = ["ASK_ABOUT", "DESCRIBE", "NO_IMAGE", "MessageMenus", "QuestionModal", "add_menus"]

log = logging.getLogger("glimpse.discord")

DESCRIBE = "Describe this image"
ASK_ABOUT = "Ask Glimpse about this image"
DESCRIBE_QUESTION = "Describe this image."
NO_IMAGE = "That message has no image I can see. Use this on a message with a picture (or a forward of one)."
QUESTION_MAX_CHARS = 1000
MODAL_TIMEOUT_SECONDS = 15 * 60  # as long as Discord lets the interaction be answered

Asked = Callable[[discord.Interaction, str], Awaitable[None]]


class QuestionModal(discord.ui.Modal, title=ASK_ABOUT):
    """One text box for the question; its submit is answered like `/ask`."""

    question: discord.ui.TextInput[QuestionModal] = discord.ui.TextInput(
        label="Your question",
        style=discord.TextStyle.paragraph,
        placeholder="What does the sign say?",
        max_length=QUESTION_MAX_CHARS,
    )

    def __init__(self, asked: Asked) -> None:
        super().__init__(timeout=MODAL_TIMEOUT_SECONDS)
        self._asked = asked

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self._asked(interaction, self.question.value.strip() or DESCRIBE_QUESTION)


class MessageMenus:
    """What the two message menus do; the command tree only forwards to these."""

    def __init__(self, answers: InteractionAnswers) -> None:
        self._answers = answers

    async def describe(self, interaction: discord.Interaction, message: discord.Message) -> None:
        quote = await _image_quote(interaction, message)
        if quote is not None:
            await self._answers.answer(
                interaction, DESCRIBE_QUESTION, about=_about(message), quoted=(quote,)
            )

    async def ask_about(self, interaction: discord.Interaction, message: discord.Message) -> None:
        quote = await _image_quote(interaction, message)
        if quote is None:
            return

        async def asked(submitted: discord.Interaction, question: str) -> None:
            await self._answers.answer(submitted, question, about=_about(message), quoted=(quote,))

        try:
            await interaction.response.send_modal(QuestionModal(asked))
        except discord.HTTPException as exc:  # already acknowledged (a replay) or expired
            log.info("cannot open the question box for interaction %s: %s", interaction.id, exc)


def add_menus(tree: app_commands.CommandTree[discord.Client], menus: MessageMenus) -> None:
    """Register both menus, installable to servers and to users, usable everywhere."""
    for name, action in ((DESCRIBE, menus.describe), (ASK_ABOUT, menus.ask_about)):
        menu: app_commands.ContextMenu = app_commands.ContextMenu(name=name, callback=action)
        menu = app_commands.allowed_installs(guilds=True, users=True)(menu)
        menu = app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)(menu)
        tree.add_command(menu)


async def _image_quote(
    interaction: discord.Interaction, message: discord.Message
) -> QuotedMessage | None:
    """The message as a quote with its images (forwarded ones included); else a short private answer."""
    bot_id = interaction.client.user.id if interaction.client.user is not None else 0
    quote = reply_quote(message, bot_id)
    if quote.images:
        return quote
    log.info("menu %s used on message %s, which has no image", interaction.id, message.id)
    try:
        await interaction.response.send_message(NO_IMAGE, ephemeral=True)
    except discord.HTTPException as exc:  # already acknowledged (a replay) or expired
        log.info("cannot answer interaction %s: %s", interaction.id, exc)
    return None


def _about(message: discord.Message) -> str:
    return f"↪ {message.jump_url}"
