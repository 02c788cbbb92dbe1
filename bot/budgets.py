"""Daily budgets: record what each model call cost; refuse a payer over budget before an answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.config import Settings
from bot.ledger import CallKind, Dimension, Ledger, LedgerEntry, Payer, utc_day
from bot.messages import IncomingMessage
from bot.store import StoreError
from bot.turns import Usage

__all__ = ["CHANNEL_OVER", "USER_OVER", "WORKSPACE_OVER", "Budgets", "payer_of"]

log = logging.getLogger("glimpse.budgets")

RESETS = "it resets at midnight UTC."
USER_OVER = f"You have used today's budget for Glimpse; {RESETS}"
CHANNEL_OVER = f"This channel has used today's budget for Glimpse; {RESETS}"
WORKSPACE_OVER = f"This workspace has used today's budget for Glimpse; {RESETS}"


def payer_of(message: IncomingMessage) -> Payer:
    """Who pays for an answer to `message`: a thread is charged to its parent channel."""
    key = message.key
    return Payer(
        key.platform, key.workspace, message.parent_channel or key.channel, message.author_id
    )


class Budgets:
    """The ledger plus the operator's daily limits in US dollars (0: no limit)."""

    def __init__(
        self, settings: Settings, ledger: Ledger, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.ledger = ledger
        self._limits: tuple[tuple[float, Dimension, str], ...] = (
            (settings.daily_budget_workspace_usd, "workspace", WORKSPACE_OVER),
            (settings.daily_budget_channel_usd, "channel", CHANNEL_OVER),
            (settings.daily_budget_user_usd, "user", USER_OVER),
        )
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return any(limit > 0 for limit, _, _ in self._limits)

    async def refusal(self, message: IncomingMessage) -> str | None:
        """The polite sentence if today's budget is used up; None to answer (also if unknown)."""
        if not self.enabled:
            return None
        payer = payer_of(message)
        try:
            spend = await self.ledger.spend(utc_day(self._clock()), payer)
        except StoreError as exc:
            log.warning("budgets unchecked (%s); answering %s anyway", exc, message.message_id)
            return None
        for limit, scope, sentence in self._limits:
            spent = getattr(spend, scope)
            if limit > 0 and spent >= limit:
                log.info(
                    "%s %s is over its daily budget ($%.4f of $%.2f); %s not answered",
                    scope,
                    payer.member(scope),
                    spent,
                    limit,
                    message.message_id,
                )
                return sentence
        return None

    async def record(
        self, message: IncomingMessage, usage: Usage, images: int, *, kind: CallKind = "answer"
    ) -> None:
        """Charge a model call (answer or summary) to `message`'s payer; outages are only logged."""
        entry = LedgerEntry(
            day=utc_day(self._clock()),
            payer=payer_of(message),
            model=usage.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=usage.cost,
            images=images,
            kind=kind,
        )
        try:
            await self.ledger.record(entry)
        except StoreError as exc:
            log.warning(
                "could not record the %s usage of %s ($%.6f): %s",
                kind,
                message.message_id,
                usage.cost,
                exc,
            )
