"""Web API look-ups on the way in: remembered for a while, shared while in flight, never fatal."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["LogOnce", "LookupCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# A loader answers (value, seconds to keep it); it should not raise (its callers share one result).
Loader = Callable[[K], Awaitable[tuple[V, float]]]


class LookupCache(Generic[K, V]):
    """A bounded LRU of look-up results, each kept for the seconds its loader says.

    Callers asking for a key while it is being looked up share that one call::

        names = LookupCache(load_name, limit=10_000)
        name = await names.get("U0ALICE01")
    """

    def __init__(
        self, load: Loader[K, V], *, limit: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load = load
        self._limit = limit
        self._clock = clock
        self._kept: OrderedDict[K, tuple[V, float]] = OrderedDict()  # key -> (value, expires at)
        self._loading: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._kept)

    async def get(self, key: K) -> V:
        """The remembered value while fresh; otherwise one call to the loader, shared."""
        kept = self._kept.get(key)
        if kept is not None and kept[1] > self._clock():
            self._kept.move_to_end(key)
            return kept[0]
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load_and_keep(key))
            self._loading[key] = loading
        # shield: one caller giving up (cancelled) does not cancel the call the others wait for.
        return await asyncio.shield(loading)

    async def _load_and_keep(self, key: K) -> V:
        try:
            value, keep_seconds = await self._load(key)
        finally:
            self._loading.pop(key, None)
        self._kept[key] = (value, self._clock() + keep_seconds)
        self._kept.move_to_end(key)
        while len(self._kept) > self._limit:
            self._kept.popitem(last=False)
        return value


class LogOnce:
    """Warn the first time a kind of failure happens, then only at debug level (no log floods)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._seen: set[str] = set()

    def warning(self, kind: str, message: str, *args: object) -> None:
        """`message % args` as a warning the first time `kind` is seen, as debug afterwards."""
        level = logging.DEBUG if kind in self._seen else logging.WARNING
        self._seen.add(kind)
        self._log.log(level, message, *args)
