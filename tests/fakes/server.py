"""The life cycle every loopback fake shares: serve an aiohttp app on 127.0.0.1 at a free port."""

from __future__ import annotations

from types import TracebackType
from typing import Any, ClassVar, Self

from aiohttp import web

__all__ = ["LoopbackServer"]


class LoopbackServer:
    """Subclasses build their app in `_app`; `async with fake:` starts and stops it."""

    RUNNER_OPTIONS: ClassVar[dict[str, Any]] = {}
    SITE_OPTIONS: ClassVar[dict[str, Any]] = {}
    _runner: web.AppRunner | None = None
    port: int = 0

    def _app(self) -> web.Application:
        raise NotImplementedError

    async def _before_close(self) -> None:
        """Close what the app holds open (websockets, streams) before the server stops."""

    async def start(self) -> Self:
        self._runner = web.AppRunner(self._app(), access_log=None, **self.RUNNER_OPTIONS)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, **self.SITE_OPTIONS).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        await self._before_close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
