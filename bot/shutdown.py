"""Graceful shutdown: on SIGTERM or SIGINT stop taking messages, finish answers in flight, then stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

__all__ = ["STOP_SIGNALS", "Gate", "serve_until_signalled"]

log = logging.getLogger("glimpse.shutdown")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Gate:
    """Counts the messages being handled; once closed it admits no more, and `drain` waits."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def enter(self) -> bool:
        """Admit one message (True), or refuse it because the gate is closed (False)."""
        if self._closed:
            return False
        self._in_flight += 1
        self._idle.clear()
        return True

    def leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def drain(self, timeout_seconds: float) -> int:
        """Close the gate and wait for the messages inside; return how many are still running."""
        self._closed = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_seconds)
        except TimeoutError:
            pass
        return self._in_flight


async def serve_until_signalled(
    runners: Sequence[Coroutine[Any, Any, None]],
    *,
    drain: Callable[[], Awaitable[object]],
    signals: Sequence[signal.Signals] = STOP_SIGNALS,
) -> None:
    """Run the runners until a signal arrives or one of them ends; then drain and cancel them all.

    `drain` runs while the runners (platform connections) are still up, so answers in flight
    can finish; a second signal cuts it short. An exception from a runner is re-raised.
    """
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    hurry = asyncio.Event()

    def on_signal(number: signal.Signals) -> None:
        log.info(
            "received %s: %s", number.name, "stopping now" if signalled.is_set() else "draining"
        )
        (hurry if signalled.is_set() else signalled).set()

    for number in signals:
        loop.add_signal_handler(number, on_signal, number)
    tasks = [asyncio.ensure_future(runner) for runner in runners]
    try:
        await _first_of(tasks, signalled)
        if not signalled.is_set():
            log.info("a platform stopped; stopping the others")
        else:
            await _first_of([asyncio.ensure_future(drain())], hurry, cancel_rest=True)
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
        await _cancel(tasks)
    _report(tasks, signalled=signalled.is_set())


async def _first_of(
    tasks: Sequence[asyncio.Future[Any]], event: asyncio.Event, *, cancel_rest: bool = False
) -> None:
    """Wait until one task ends or the event is set."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if cancel_rest:
            await _cancel(tasks)


async def _cancel(tasks: Sequence[asyncio.Future[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _report(tasks: Sequence[asyncio.Future[Any]], *, signalled: bool) -> None:
    """Re-raise a runner's failure; after a signal, failures while closing are only logged."""
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is None:
            continue
        if not signalled:
            raise error
        log.warning("a platform failed while shutting down: %r", error)
