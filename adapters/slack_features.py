"""What each Slack workspace has refused (native streaming, the markdown block), remembered for good."""

from __future__ import annotations

import logging
from typing import Literal

__all__ = ["NATIVE_REFUSALS", "WorkspaceFeatures"]

log = logging.getLogger("glimpse.slack")

Feature = Literal["native streaming", "markdown block"]
# chat.startStream errors that say "not in this workspace (or for this app)", not "not this message":
# an unknown method (an older Slack, a proxy), a token or scope that cannot use it, the feature
# off, the app's messages tab off (Slack's streaming lives in the AI app surfaces).
NATIVE_REFUSALS = frozenset(
    {
        "unknown_method",
        "method_not_supported",
        "not_allowed_token_type",
        "missing_scope",
        "feature_not_enabled",
        "not_enabled",
        "team_not_eligible",
        "messages_tab_disabled",
        "HTTP 404",
    }
)


class WorkspaceFeatures:
    """Per workspace (team id), the features Slack refused; asked before each answer."""

    def __init__(self) -> None:
        self._refused: dict[Feature, set[str]] = {}

    def allows(self, team: str, feature: Feature) -> bool:
        return team not in self._refused.get(feature, set())

    def refuse(self, team: str, feature: Feature, error: str) -> None:
        """Remember for this process that `team` refused `feature`; logged once."""
        teams = self._refused.setdefault(feature, set())
        if team not in teams:
            teams.add(team)
            log.warning(
                "slack: workspace %s refused %s (%s); using the fallback there from now on",
                team,
                feature,
                error,
            )
