"""Health endpoints for `glimpse run`: /healthz (alive), /readyz (store and platforms), /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.metrics import CONTENT_TYPE
from bot.store import StoreError

if TYPE_CHECKING:
    from bot.conversations import Conversations

__all__ = ["HealthServer", "Readiness", "ShardState"]

log = logging.getLogger("glimpse.health")

STORE_PING_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class ShardState:
    """One gateway connection of a sharded platform, as /readyz shows it."""

    ready: bool
    latency_seconds: float | None  # the last heartbeat's round trip; None before the first

    def as_json(self) -> dict[str, Any]:
        latency = self.latency_seconds
        return {
            "ready": self.ready,
            "latency_ms": None if latency is None else round(latency * 1000, 1),
        }


ShardReport = Callable[[], Mapping[int, ShardState]]


class Readiness:
    """Which platforms this process serves and whether each is connected now.

    `glimpse run` expects the platforms it starts; each adapter reports its connection:

        conversations.readiness.set("slack", True)    # connected (again)
        conversations.readiness.set("slack", False)   # lost the connection

    A platform that runs several connections (Discord shards) also names a report of each,
    read when /readyz is asked: `readiness.report_shards("discord", lambda: {0: ShardState(...)})`.
    """

    def __init__(self) -> None:
        self._connected: dict[str, bool] = {}
        self._shard_reports: dict[str, ShardReport] = {}

    def expect(self, platforms: Iterable[str]) -> None:
        """Platforms that must report connected before the process is ready."""
        for platform in platforms:
            self._connected.setdefault(platform, False)

    def set(self, platform: str, connected: bool) -> None:
        if self._connected.get(platform) != connected:
            log.info("%s %s", platform, "connected" if connected else "disconnected")
        self._connected[platform] = connected

    def snapshot(self) -> dict[str, bool]:
        return dict(self._connected)

    def report_shards(self, platform: str, report: ShardReport) -> None:
        """Where /readyz reads the state of each of the platform's shards in this process."""
        self._shard_reports[platform] = report

    def shards(self) -> dict[str, dict[int, ShardState]]:
        """Each reporting platform's shards, by shard id."""
        return {platform: dict(report()) for platform, report in self._shard_reports.items()}

    @property
    def ready(self) -> bool:
        return all(self._connected.values())


class HealthServer:
    """A small aiohttp server reading a Conversations service's state; `start` returns the port."""

    def __init__(self, conversations: Conversations, *, host: str = "0.0.0.0", port: int) -> None:
        self._conversations = conversations
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        port = int(self._runner.addresses[0][1])
        log.info("health: /healthz, /readyz and /metrics on %s:%d", self._host, port)
        return port

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        conversations = self._conversations
        store = await self._store_state()
        platforms = conversations.readiness.snapshot()
        ready = store == "ok" and all(platforms.values()) and not conversations.draining
        body = {
            "ready": ready,
            "store": store,
            "platforms": {
                name: "connected" if up else "not connected" for name, up in platforms.items()
            },
            "draining": conversations.draining,
        }
        shards = conversations.readiness.shards()
        if shards:
            body["shards"] = {
                platform: {str(shard): state.as_json() for shard, state in sorted(states.items())}
                for platform, states in shards.items()
            }
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self._conversations.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _store_state(self) -> str:
        try:
            await asyncio.wait_for(self._conversations.ping_store(), STORE_PING_TIMEOUT_SECONDS)
        except StoreError as exc:
            return f"unreachable: {exc}"
        except TimeoutError:
            return f"no answer within {STORE_PING_TIMEOUT_SECONDS:g} s"
        return "ok"
