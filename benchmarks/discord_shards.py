"""P6: Discord answers per second with 1, 2 and 4 `glimpse run` shard processes on one Redis, and Redis trips per answer.

The harness starts real `glimpse run --platform discord` processes, each on its share of the
shards (`shard_count` = processes), against one fake Discord gateway and REST API and the paced
fake OpenRouter. The fake Discord and a counting proxy in front of Redis run in a driver process
of their own; the fake OpenRouter in the servers process (`servers.py`).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from benchmarks.child import PipedChild
from benchmarks.common import ROOT, ModelShape
from benchmarks.machine import process_cpu_seconds
from benchmarks.servers import FINAL_MARK, Servers
from tests.fakes.discord import FakeDiscord, make_user
from tests.fakes.openrouter import FAKE_API_KEY

__all__ = ["ShardRow", "ShardScaling", "measure_shards", "render_shards"]

SHAPE = ModelShape(tokens=30, seconds=0.3, first_token_seconds=0.1)  # short answers: throughput
SHARDS_OF_GUILDS = (
    4  # guilds are placed on shard i % 4 of 4, so 1, 2 and 4 processes split them evenly
)
# One text channel each. Many, so mentions rarely share a channel: discord.py sends one request at a
# time per rate-limit bucket until Discord's headers say more (the fake sends none), and opening a
# thread is bucketed by channel, so 300 mentions in 8 channels would measure that queue instead.
GUILDS = 100
IDENTIFY_WINDOW_SECONDS = 0.2  # the fake's and Glimpse's, so start-up does not take 5 s per shard
MAX_CONCURRENT_ANSWERS = 1_000  # every mention streams at once, as in P1
START_SECONDS = 90.0
ROUND_SECONDS = 180.0
STORED_SECONDS = 60.0  # for the processes to store the answers the fake Discord shows
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


# --- the driver process: fake Discord and the counting Redis proxy ---


class _RespCounter:
    """Counts the commands in a client's RESP stream (arrays of bulk strings, or inline), by name."""

    def __init__(self, names: Counter[str]) -> None:
        self._names = names
        self._buffer = bytearray()
        self._bulks = 0  # bulk strings left in the current command
        self._skip = 0  # bytes of a bulk string (and its CRLF) still to pass
        self._name: bytearray | None = None  # the command's name while it is read

    def feed(self, data: bytes) -> int:
        buffer = self._buffer
        buffer += data
        position = commands = 0
        while True:
            if self._skip:
                taken = min(self._skip, len(buffer) - position)
                if self._name is not None:
                    self._name += buffer[position : position + taken]
                position += taken
                self._skip -= taken
                if self._skip:
                    break
                if self._name is not None:
                    self._names[bytes(self._name[:-2]).decode(errors="replace").upper()] += 1
                    self._name = None
                continue
            end = buffer.find(b"\r\n", position)
            if end < 0:
                break
            line = bytes(buffer[position:end])
            position = end + 2
            if self._bulks:
                self._bulks -= 1
                self._skip = int(line[1:]) + 2
            else:
                commands += 1
                if line.startswith(b"*"):
                    self._bulks = int(line[1:])
                    self._name = bytearray()
                else:  # an inline command
                    self._names[line.split(b" ", 1)[0].decode(errors="replace").upper()] += 1
        del buffer[:position]
        return commands


@dataclass
class RedisCounter:
    """A loopback TCP proxy in front of Redis counting commands (by name) and round trips.

    A round trip is a burst of requests sent while none was outstanding on that connection: one
    command, or one pipeline / MULTI…EXEC sent in one go.
    """

    host: str
    port: int
    commands: int = 0
    round_trips: int = 0
    names: Counter[str] = field(default_factory=Counter)
    _server: asyncio.Server | None = None
    _links: set[asyncio.Task[Any]] = field(default_factory=set)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        parser = _RespCounter(self.names)
        waiting = [False]  # a request is outstanding on this connection

        async def upstream() -> None:
            while data := await reader.read(65536):
                if not waiting[0]:
                    self.round_trips += 1
                    waiting[0] = True
                self.commands += parser.feed(data)
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                waiting[0] = False
                writer.write(data)
                await writer.drain()

        links = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        self._links.update(links)
        try:
            await asyncio.wait(links, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for link in links:
                link.cancel()
            await asyncio.gather(*links, return_exceptions=True)  # a process killed: a reset
            self._links.difference_update(links)
            up_writer.close()
            writer.close()


class _BenchDiscord(FakeDiscord):
    """FakeDiscord noting when each thread first shows a complete answer, and how many did."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.completed: dict[int, float] = {}  # thread id -> perf_counter of the complete answer
        self.complete_messages: dict[int, set[str]] = {}  # thread id -> bot messages complete

    async def _post_message(self, parts: list[str], body: Any, request: Any) -> Any:
        response = await super()._post_message(parts, body, request)
        posted = json.loads(response.body)
        self._check(int(parts[1]), str(posted.get("content") or ""), str(posted.get("id")))
        return response

    async def _patch_message(self, parts: list[str], body: Any, request: Any) -> Any:
        response = await super()._patch_message(parts, body, request)
        message = self.messages.get(int(parts[3]))
        if message is not None:
            self._check(int(message["channel_id"]), str(message["content"]), parts[3])
        return response

    def _check(self, channel: int, text: str, message_id: str) -> None:
        if FINAL_MARK in text:
            self.completed.setdefault(channel, time.perf_counter())
            self.complete_messages.setdefault(channel, set()).add(message_id)


@dataclass(frozen=True, slots=True)
class _RoundReport:
    seconds: float
    answered: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class _Tally:
    """The proxy's counters at one moment."""

    commands: int
    round_trips: int
    names: Counter[str]

    def __sub__(self, other: _Tally) -> _Tally:
        return _Tally(
            self.commands - other.commands,
            self.round_trips - other.round_trips,
            self.names - other.names,
        )


async def _round(fake: _BenchDiscord, channels: list[int], count: int, tag: str) -> _RoundReport:
    """`count` mentions at once, spread over the guilds, each from its own member; until all are answered."""
    started = time.perf_counter()
    sent = await asyncio.gather(
        *(
            fake.user_message(
                channels[i % len(channels)],
                f"what is in the photo of the lake? ({tag}-{i})",
                author=make_user(f"member-{tag}-{i}"),
                mention_bot=True,
            )
            for i in range(count)
        )
    )
    threads = [int(message["id"]) for message in sent]
    deadline = time.perf_counter() + ROUND_SECONDS
    while time.perf_counter() < deadline and not all(t in fake.completed for t in threads):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    done = [fake.completed[t] for t in threads if t in fake.completed]
    return _RoundReport(
        seconds=(max(done) - started) if done else float("nan"),
        answered=len(done),
        duplicates=sum(
            len(fake.complete_messages.get(t, ())) - 1 for t in threads if t in fake.completed
        ),
    )


async def _drive(conn: Connection, redis_host: str, redis_port: int) -> None:
    fake = _BenchDiscord(shard_count=1, identify_window_seconds=IDENTIFY_WINDOW_SECONDS)
    channels = [
        fake.add_guild(f"guild {i}", shard=(i % SHARDS_OF_GUILDS, SHARDS_OF_GUILDS))[1]
        for i in range(GUILDS)
    ]
    proxy = RedisCounter(redis_host, redis_port)
    async with fake:
        proxy_port = await proxy.start()
        conn.send((fake.api_base, fake.gateway_url, fake.token, proxy_port, os.getpid()))
        while True:
            op, arg = await asyncio.to_thread(conn.recv)
            if op == "stop":
                await proxy.close()
                return
            if op == "round":
                conn.send(await _round(fake, channels, *arg))
            elif op == "tally":
                conn.send(_Tally(proxy.commands, proxy.round_trips, Counter(proxy.names)))
            elif op == "identifies":
                conn.send(
                    (
                        sum(1 for c in fake.connections if c.hello_op == 2),
                        len(fake.identify_violations),
                    )
                )


def _driver_main(conn: Connection, redis_host: str, redis_port: int) -> None:
    asyncio.run(_drive(conn, redis_host, redis_port))


class _Driver:
    """The driver process; `round(count, tag)` runs one round of mentions there."""

    def __init__(self) -> None:
        target = urlsplit(REDIS_URL)
        self._child = PipedChild(
            _driver_main,
            target.hostname or "127.0.0.1",
            target.port or 6379,
            what="Discord driver",
        )
        self._conn = self._child.conn

    def __enter__(self) -> _Driver:
        started = self._child.start(START_SECONDS)
        self.api_base, self.gateway_url, self.token, self.proxy_port, self.pid = started
        return self

    def __exit__(self, *exc: object) -> None:
        self._child.stop()

    async def round(self, count: int, tag: str) -> _RoundReport:
        self._conn.send(("round", (count, tag)))
        report: _RoundReport = await asyncio.to_thread(self._conn.recv)
        return report

    async def tally(self) -> _Tally:
        self._conn.send(("tally", None))
        tally: _Tally = await asyncio.to_thread(self._conn.recv)
        return tally

    async def identifies(self) -> tuple[int, int]:
        self._conn.send(("identifies", None))
        found: tuple[int, int] = await asyncio.to_thread(self._conn.recv)
        return found


# --- Glimpse processes ---


@dataclass
class _Glimpse:
    process: asyncio.subprocess.Process
    health_port: int
    log: Path

    async def ready(self) -> None:
        async with asyncio.timeout(START_SECONDS), aiohttp.ClientSession() as http:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"glimpse run exited:\n{self.log.read_text()[-2000:]}")
                try:
                    async with http.get(f"http://127.0.0.1:{self.health_port}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)

    async def answered(self, http: aiohttp.ClientSession) -> float:
        """Messages this process has answered (and stored), from its /metrics."""
        async with http.get(f"http://127.0.0.1:{self.health_port}/metrics") as response:
            text = await response.text()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("glimpse_messages_total{")
            and 'platform="discord"' in line
            and 'status="answered"' in line
        )

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _start_glimpse(
    driver: _Driver, openrouter: str, store: str, count: int, shard: int, folder: Path
) -> _Glimpse:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GLIMPSE_", "OPENROUTER_", "DISCORD_", "SLACK_"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        OPENROUTER_API_KEY=FAKE_API_KEY,
        OPENROUTER_BASE_URL=openrouter,
        DISCORD_TOKEN=driver.token,
        DISCORD_API_BASE=driver.api_base,
        DISCORD_GATEWAY_URL=driver.gateway_url,
        GLIMPSE_STORE_URL=store,
        GLIMPSE_MAX_RETRIES="0",
        GLIMPSE_MAX_CONCURRENT_ANSWERS=str(MAX_CONCURRENT_ANSWERS),
        GLIMPSE_DISCORD__SHARD_COUNT=str(count),
        GLIMPSE_DISCORD__SHARD_IDS=str(shard),
        GLIMPSE_DISCORD__IDENTIFY_WINDOW_SECONDS=str(IDENTIFY_WINDOW_SECONDS),
    )
    port = _free_port()
    log = folder / f"glimpse-{count}-{shard}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", "--platform", "discord",
            "--health-port", str(port), "--log-level", "INFO",
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=folder,
        )  # fmt: skip
    return _Glimpse(process, port, log)


# --- results ---


@dataclass
class ShardRow:
    """One fleet size: its rounds' answers per second and what each answer cost."""

    processes: int
    rates: list[float] = field(default_factory=list)  # answers per second, per measured round
    answered: int = 0
    asked: int = 0
    duplicates: int = 0
    commands: int = 0
    round_trips: int = 0
    names: Counter[str] = field(default_factory=Counter)  # Redis commands by name
    glimpse_cpu: float = 0.0  # CPU seconds of the Glimpse processes over the measured rounds
    fakes_cpu: float = 0.0  # CPU seconds of the fake Discord, the Redis proxy and the fake model

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")

    def per_answer(self, total: float) -> float:
        return total / self.answered if self.answered else float("nan")


@dataclass
class ShardScaling:
    """P6's rows, or why it was not measured."""

    mentions: int
    rounds: int
    rows: list[ShardRow] = field(default_factory=list)
    identifies: int = 0
    violations: int = 0
    reason: str = ""

    def linear_share(self, row: ShardRow) -> float:
        """The row's rate ÷ (one process's rate × processes): 1.0 is linear."""
        base = self.rows[0].rate if self.rows else float("nan")
        return row.rate / (base * row.processes)


def _cpu(pids: list[int]) -> float:
    return sum(process_cpu_seconds(pid) or 0.0 for pid in pids)


async def _fleet_size(
    driver: _Driver, servers: Servers, row: ShardRow, mentions: int, rounds: int, folder: Path
) -> None:
    prefix = f"bench-shards-{uuid.uuid4().hex[:8]}"
    target = urlsplit(REDIS_URL)
    store = f"redis://127.0.0.1:{driver.proxy_port}{target.path or '/0'}?prefix={prefix}"
    fleet = [
        await _start_glimpse(driver, servers.openrouter, store, row.processes, shard, folder)
        for shard in range(row.processes)
    ]
    try:
        await asyncio.gather(*(glimpse.ready() for glimpse in fleet))
        warm = max(4, mentions // 10)
        await driver.round(warm, f"{row.processes}-warm")
        expected = await _stored(fleet, warm)
        pids = [g.process.pid for g in fleet]
        for number in range(rounds):
            glimpse_cpu, fakes_cpu = _cpu(pids), _cpu([driver.pid, servers.pid])
            before = await driver.tally()
            report = await driver.round(mentions, f"{row.processes}-{number}")
            expected = await _stored(fleet, expected + report.answered)
            spent = await driver.tally() - before
            row.glimpse_cpu += _cpu(pids) - glimpse_cpu
            row.fakes_cpu += _cpu([driver.pid, servers.pid]) - fakes_cpu
            row.rates.append(report.answered / report.seconds)
            print(
                f"[P6] {row.processes} process(es), round {number + 1}: {report.answered}/{mentions} "
                f"in {report.seconds:.1f} s",
                flush=True,
            )
            row.asked += mentions
            row.answered += report.answered
            row.duplicates += report.duplicates
            row.commands += spent.commands
            row.round_trips += spent.round_trips
            row.names.update(spent.names)
    finally:
        await asyncio.gather(*(glimpse.stop() for glimpse in fleet))
        await _forget(prefix)


async def _stored(fleet: list[_Glimpse], answers: float) -> float:
    """Wait until the fleet has answered and stored `answers` in all (its /metrics say so), or a minute."""
    deadline = time.perf_counter() + STORED_SECONDS
    async with aiohttp.ClientSession() as http:
        while (done := sum([await g.answered(http) for g in fleet])) < answers:  # noqa: ASYNC110
            if time.perf_counter() > deadline:
                print(f"[P6] only {done:.0f} of {answers:.0f} answers stored", flush=True)
                break
            await asyncio.sleep(0.05)
    return done


async def _forget(prefix: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        names = [name async for name in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(names), 500):
            await client.delete(*names[start : start + 500])
    finally:
        await client.aclose()


async def _redis_reason() -> str:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except redis.RedisError as exc:
        return f"not measured: no Redis at REDIS_URL={REDIS_URL} ({exc})"
    finally:
        await client.aclose()
    return ""


async def measure_shards(
    servers: Servers, mentions: int, rounds: int, sizes: tuple[int, ...]
) -> ShardScaling:
    """For each fleet size: start it, one warm-up round, then `rounds` rounds of `mentions` at once."""
    result = ShardScaling(mentions, rounds)
    result.reason = await _redis_reason()
    if result.reason:
        return result
    servers.set_shape(SHAPE)
    folder = Path(tempfile.mkdtemp(prefix="glimpse-shards-"))
    with _Driver() as driver:
        for size in sizes:
            row = ShardRow(size)
            await _fleet_size(driver, servers, row, mentions, rounds, folder)
            result.rows.append(row)
        result.identifies, result.violations = await driver.identifies()
    return result


def render_shards(result: ShardScaling | None, cores: int | None = None) -> str:
    """The P6 section of RESULTS.md."""
    if result is None:
        return "Not run.\n"
    if result.reason:
        return f"{result.reason}.\n"
    cores = cores or os.cpu_count() or 1
    lines = [
        "| processes | answers / s (median) | ÷ linear | Redis commands / answer | Redis round trips / answer | Glimpse CPU ms / answer | fakes' CPU ms / answer | answered | duplicates |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result.rows:
        lines.append(
            f"| {row.processes} | {row.rate:.1f} | {result.linear_share(row):.2f} | "
            f"{row.per_answer(row.commands):.1f} | {row.per_answer(row.round_trips):.1f} | "
            f"{row.per_answer(row.glimpse_cpu) * 1000:.1f} | {row.per_answer(row.fakes_cpu) * 1000:.1f} | "
            f"{row.answered}/{row.asked} | {row.duplicates} |"
        )
    top = [
        "Redis commands per answer, by name (the most frequent): "
        + "; ".join(
            f"{row.processes} process{'es' if row.processes > 1 else ''}: "
            + ", ".join(f"{name} {row.per_answer(n):.1f}" for name, n in row.names.most_common(8))
            for row in result.rows
        )
        + "."
    ]
    return (
        f"{result.mentions} mentions at once per round, each from its own member, spread over {GUILDS} "
        f"guilds on {SHARDS_OF_GUILDS} shards' worth of guild ids; {result.rounds} measured rounds per "
        f"fleet size after one warm-up round. Each process is `glimpse run --platform discord` on "
        f"shard i of `shard_count` = processes, all on one Redis through a counting proxy, answering "
        f"a fake model of {SHAPE.tokens} tokens in {SHAPE.seconds:g} s with `max_concurrent_answers` "
        f"{MAX_CONCURRENT_ANSWERS:,}. The rate is answers ÷ the time from the first mention to the "
        f"last complete answer in the fake Discord; Redis is counted from the first mention until "
        f"every process has stored its answers. This machine has {cores} cores for the Glimpse "
        f"processes, the fake Discord (its gateway, REST and the proxy in one process) and the fake "
        f"model together, so beyond {cores} processes nothing can scale, and the fakes' CPU grows "
        f"with the answers too: ÷ linear says what one more process bought here, not on a machine "
        f"with a core per process.\n\n"
        + "\n".join(lines)
        + "\n\n"
        + "\n".join(top)
        + f"\n\nIDENTIFY: {result.identifies} sessions started, {result.violations} refused by the "
        f"fake for breaking the concurrency bucket rule.\n"
    )
