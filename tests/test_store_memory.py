"""The in-memory store against the store contract, and how open_store picks a backend."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from bot.store import MemoryStore, SQLiteStore, StoreError, open_store
from tests.store_contract import KEY, StoreContract, turn


class TestMemoryStoreContract(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        store = MemoryStore()
        await store.open()
        yield store
        await store.close()


async def test_expired_claims_are_swept() -> None:
    store = MemoryStore(claim_sweep_seconds=0)
    await store.open()
    for i in range(20):
        await store.claim(f"ev{i}", 0.01)
    await asyncio.sleep(0.03)
    await store.claim("last", 60)
    assert list(store._claims) == ["last"]


async def test_prune_drops_expired_claims() -> None:
    store = MemoryStore()
    await store.open()
    await store.claim("short", 0.01)
    await store.claim("long", 60)
    await asyncio.sleep(0.03)
    await store.prune(0)
    assert list(store._claims) == ["long"]


async def test_closing_keeps_the_data() -> None:
    store = MemoryStore()
    await store.open()
    await store.append(KEY, [turn("kept")])
    await store.close()
    await store.open()
    assert [t.text for t in await store.load(KEY, 10)] == ["kept"]


def test_open_store_memory() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    assert open_store("memory://") is not open_store("memory://")


def test_open_store_sqlite() -> None:
    store = open_store("sqlite:////srv/glimpse/glimpse.db")
    assert isinstance(store, SQLiteStore)
    assert str(store.path) == "/srv/glimpse/glimpse.db"


def test_open_store_redis_without_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bot.store.redis", None)  # as if the module did not exist
    for url in ("redis://localhost:6379/0", "rediss://:secret@cache.example:6380/1"):
        with pytest.raises(StoreError, match="Redis store is not available"):
            open_store(url)


@pytest.mark.parametrize(
    "url", ["postgres://user:hunter2@db/glimpse", "ftp://x", "glimpse.db", "/var/lib/glimpse.db"]
)
def test_open_store_rejects_other_urls_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///") as caught:
        open_store(url)
    assert "hunter2" not in str(caught.value)
