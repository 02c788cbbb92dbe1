"""A benchmark's helper process: started with spawn, spoken to over a pipe, stopped with ("stop", None)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

STOP_JOIN_SECONDS = 5.0


class PipedChild:
    """`target(conn, *args)` in a spawned daemon process; `conn` here is this side of the pipe."""

    def __init__(self, target: Callable[..., Any], *args: Any, what: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self._what = what
        self._process = context.Process(target=target, args=(child, *args), daemon=True)

    def start(self, within_seconds: float) -> Any:
        """Start the process; the first thing it sends (what it serves), within the time given."""
        self._process.start()
        if not self.conn.poll(within_seconds):
            raise RuntimeError(f"the {self._what} process did not start")
        return self.conn.recv()

    def stop(self) -> None:
        """Ask it to stop; terminate it if it has not within a few seconds."""
        try:
            self.conn.send(("stop", None))
        finally:
            self._process.join(STOP_JOIN_SECONDS)
            if self._process.is_alive():
                self._process.terminate()
