"""Open the memory store a URL names: SQLite (default), Redis (shared) or in-process memory."""

from __future__ import annotations

import importlib
import os

from bot.store.base import Store, StoreError
from bot.store.memory import MemoryStore
from bot.store.sqlite import SQLiteStore

__all__ = [
    "MemoryStore",
    "SQLiteStore",
    "Store",
    "StoreError",
    "is_relative_sqlite",
    "open_store",
    "sqlite_path",
    "store_location",
]

_SCHEMES = "sqlite:////absolute/path/glimpse.db, redis://host:port/db or memory://"


def open_store(url: str, *, retention_days: int | None = None) -> Store:
    """The store for `url`, not yet opened (await `store.open()`).

    `sqlite:///relative.db` and `sqlite:////absolute/path.db` (everything after
    `sqlite:///` is the path; parent directories are created on open),
    `memory://` (a new in-process store), `redis://` or `rediss://`
    (`redis://[:password@]host:port/db[?prefix=name]`; keys start with `name:`, default `glimpse`).
    `retention_days` sets the Redis turns' expiry (None: 30 days, 0: never); the other
    backends keep turns until `prune`. Raise ValueError for a URL of another kind,
    StoreError if the backend is missing.
    """
    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()
    if not separator:
        raise ValueError(f"a store URL looks like {_SCHEMES}; got one without a scheme")
    if scheme == "sqlite":
        return SQLiteStore(sqlite_path(url))
    if scheme == "memory":
        return MemoryStore()
    if scheme in ("redis", "rediss"):
        return _redis_store(url, retention_days)
    # The URL itself is not repeated: it may carry a password.
    raise ValueError(f"unknown store URL scheme {scheme!r}: use {_SCHEMES}")


def sqlite_path(url: str) -> str:
    """The file a `sqlite:///…` URL names (three slashes, then the path: a fourth makes it absolute)."""
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix) or len(url) == len(prefix):
        raise ValueError(
            "a SQLite store URL is sqlite:///relative/path.db or sqlite:////absolute/path.db "
            "(no host part)"
        )
    return url[len(prefix) :]


def is_relative_sqlite(url: str) -> bool:
    """Whether `url` is a `sqlite:///` URL naming a path relative to the working directory."""
    try:
        return url.lower().startswith("sqlite://") and not os.path.isabs(sqlite_path(url))
    except ValueError:
        return False


def store_location(url: str) -> str:
    """Where a store URL keeps its data, safe to log: the absolute SQLite file, Redis (no password)."""
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        try:
            return f"SQLite file {os.path.abspath(sqlite_path(url))}"
        except ValueError:
            return "SQLite (the URL names no file)"
    if scheme == "memory":
        return "in-process memory (forgotten at exit)"
    if scheme in ("redis", "rediss"):
        return _redis_location(url)
    return "an unknown kind of store"


def _redis_location(url: str) -> str:
    try:
        target = importlib.import_module("bot.store.redis").redis_target(url)
    except (ImportError, ValueError):
        return "Redis (the URL cannot be read)"
    return f"Redis at {target.where}, keys prefixed {target.prefix}:"


def _redis_store(url: str, retention_days: int | None) -> Store:
    try:
        module = importlib.import_module("bot.store.redis")
    except ImportError as exc:
        if exc.name in (None, "bot.store.redis"):
            raise StoreError("the Redis store is not available in this version") from exc
        raise StoreError(f"the Redis store cannot be loaded: {exc}") from exc
    if retention_days is None:
        store: Store = module.RedisStore(url)
    else:
        store = module.RedisStore(url, retention_seconds=retention_days * 86400)
    return store
