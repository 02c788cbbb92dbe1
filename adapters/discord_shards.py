"""Discord sharding: which shards this process runs, IDENTIFY paced per concurrency bucket, each shard's state."""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
import discord
from prometheus_client import CollectorRegistry, Counter, Gauge

from bot.config import ConfigError, DiscordSettings, StartupError
from bot.fleet import Fleet
from bot.health import Readiness, ShardState

__all__ = [
    "DM_SHARD",
    "IdentifyGate",
    "ShardBoard",
    "ShardPlan",
    "guild_shard",
    "plan_shards",
]

log = logging.getLogger("glimpse.discord")

PLATFORM = "discord"
DM_SHARD = 0  # Discord sends direct messages to shard 0 only
IDENTIFY_MARGIN_FRACTION = 0.1  # each bucket waits its window plus this much of it ...
IDENTIFY_MARGIN_MIN_SECONDS = 0.1  # ... and at least this, for clocks and network jitter
SESSION_EVENTS = ("identified", "resumed", "disconnected")

Latency = Callable[[int], float | None]


def guild_shard(guild_id: int, shard_count: int) -> int:
    """The shard Discord sends a guild's events to."""
    return (guild_id >> 22) % shard_count


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """The shards of the bot (`count`), the ones this process runs (`ids`), and IDENTIFY's concurrency."""

    count: int
    ids: tuple[int, ...]
    max_concurrency: int

    def describe(self) -> str:
        ids = ", ".join(map(str, self.ids))
        return (
            f"discord: running shard{'s' if len(self.ids) > 1 else ''} {ids} of {self.count} "
            f"(IDENTIFY: {self.max_concurrency} bucket{'s' if self.max_concurrency > 1 else ''})"
        )


async def plan_shards(http: discord.http.HTTPClient, settings: DiscordSettings) -> ShardPlan:
    """The plan from the settings; `auto` and `max_concurrency` from `GET /gateway/bot`."""
    try:
        recommended, _, limits = await http.get_bot_gateway()
    except (discord.GatewayNotFound, aiohttp.ClientError, OSError) as exc:  # TimeoutError too
        if settings.shard_count == "auto":
            raise StartupError(
                f"shard_count = auto, but GET /gateway/bot failed ({str(exc) or type(exc).__name__}): "
                "check the network, or set a number of shards"
            ) from None
        log.warning("GET /gateway/bot failed (%s); identifying one shard at a time", exc)
        recommended, limits = 1, None
    count = recommended if settings.shard_count == "auto" else settings.shard_count
    if not isinstance(count, int) or count < 1:
        raise StartupError(f"Discord recommended {count!r} shards; set shard_count to a number")
    ids = tuple(settings.shard_ids) or tuple(range(count))
    outside = [shard for shard in ids if shard >= count]
    if outside:
        raise ConfigError(
            f"discord.shard_ids {outside} are not below the {count} shards Discord recommends "
            "(shard_count = auto): list ids below it, or set shard_count to a number"
        )
    concurrency = int(limits["max_concurrency"]) if limits else 1
    if limits and limits["remaining"] < len(ids):
        log.warning(
            "Discord allows %d more session starts today (resets in %.0f min); this process needs %d",
            limits["remaining"],
            limits["reset_after"] / 60000,
            len(ids),
        )
    return ShardPlan(count=count, ids=ids, max_concurrency=max(1, concurrency))


class IdentifyGate:
    """`before_identify_hook`: one IDENTIFY per bucket (`shard_id % max_concurrency`) per window, fleet-wide.

    With Redis the fleet's slot is a key every process sharing the store respects; without it
    the wait is only within this process.
    """

    def __init__(self, fleet: Fleet, *, window_seconds: float) -> None:
        self._fleet = fleet
        margin = max(window_seconds * IDENTIFY_MARGIN_FRACTION, IDENTIFY_MARGIN_MIN_SECONDS)
        self.interval_seconds = window_seconds + margin
        self.max_concurrency = 1

    def bucket(self, shard_id: int | None) -> int:
        return (shard_id or 0) % self.max_concurrency

    async def wait(self, shard_id: int | None) -> None:
        bucket = self.bucket(shard_id)
        await self._fleet.pace(f"discord:identify:{bucket}", self.interval_seconds)
        log.debug("shard %s identifies (bucket %d)", shard_id, bucket)


class _ShardMetrics:
    """Gateway metrics labelled by shard: a few shards per process, so few series."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "glimpse_discord_shard_up",
            "1 while the shard's gateway session is ready, else 0",
            ["shard"],
            registry=registry,
        )
        self.latency = Gauge(
            "glimpse_discord_shard_latency_seconds",
            "The shard's last heartbeat round trip (NaN before the first)",
            ["shard"],
            registry=registry,
        )
        self.sessions = Counter(
            "glimpse_discord_shard_sessions",
            "Gateway session events by shard: identified, resumed or disconnected",
            ["shard", "event"],
            registry=registry,
        )
        self.received = Counter(
            "glimpse_discord_messages_received",
            "Messages the gateway delivered, by shard (direct messages come on shard 0)",
            ["shard"],
            registry=registry,
        )


_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, _ShardMetrics] = weakref.WeakKeyDictionary()


class ShardBoard:
    """Which of this process's shards are ready: feeds readiness (all ready), /readyz and metrics."""

    def __init__(self, readiness: Readiness, registry: CollectorRegistry, latency: Latency) -> None:
        self._readiness = readiness
        self._latency = latency
        self._ready: dict[int, bool] = {}
        if registry not in _METRICS:
            _METRICS[registry] = _ShardMetrics(registry)
        self._metrics = _METRICS[registry]
        readiness.report_shards(PLATFORM, self.report)

    def expect(self, shard_ids: tuple[int, ...]) -> None:
        """The shards this process runs: none is ready until it says so."""
        for shard in shard_ids:
            self._ready.setdefault(shard, False)
            label = str(shard)
            self._metrics.up.labels(label).set(0)
            self._metrics.latency.labels(label).set_function(self._latency_of(shard))
            for event in SESSION_EVENTS:
                self._metrics.sessions.labels(label, event)
            self._metrics.received.labels(label)

    def identified(self, shard: int) -> None:
        self._set(shard, True, "identified")

    def resumed(self, shard: int) -> None:
        self._set(shard, True, "resumed")

    def disconnected(self, shard: int) -> None:
        self._set(shard, False, "disconnected")

    def received(self, shard: int) -> None:
        self._metrics.received.labels(str(shard)).inc()

    def report(self) -> Mapping[int, ShardState]:
        return {
            shard: ShardState(ready=ready, latency_seconds=self._latency(shard))
            for shard, ready in self._ready.items()
        }

    def _set(self, shard: int, ready: bool, event: str) -> None:
        self._ready[shard] = ready
        self._metrics.up.labels(str(shard)).set(1 if ready else 0)
        self._metrics.sessions.labels(str(shard), event).inc()
        self._readiness.set(PLATFORM, bool(self._ready) and all(self._ready.values()))

    def _latency_of(self, shard: int) -> Callable[[], float]:
        def read() -> float:
            seconds = self._latency(shard)
            return math.nan if seconds is None else seconds

        return read
