"""When a round's requests leave the process: each aiohttp request write, timed while installed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp.client_reqrep import ClientRequest, ClientResponse

__all__ = ["Departures", "recorded"]


class Departures:
    """Seconds after `started` at which each request was written to its connection."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: list[float] = []


@contextmanager
def recorded() -> Iterator[Departures]:
    """Time every aiohttp request written until exit (the bare client's and Glimpse's transport).

    All of a round's answers start at once, on one core, so the k-th request leaves only once
    k requests have been built: how late the median one leaves is the start's share of the
    answer's time. The SDK-alone and usual clients send through httpx2's own transport instead.
    """
    departures = Departures()
    original = ClientRequest.send

    async def send(request: ClientRequest, conn: Any) -> ClientResponse:
        response = await original(request, conn)
        departures.seconds.append(time.perf_counter() - departures.started)
        return response

    ClientRequest.send = send  # type: ignore[method-assign,assignment]
    try:
        yield departures
    finally:
        ClientRequest.send = original  # type: ignore[method-assign]
