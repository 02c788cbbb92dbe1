"""Shared pytest fixtures: loopback fakes of remote services."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.openrouter import FakeOpenRouter


@pytest.fixture
async def fake_openrouter() -> AsyncIterator[FakeOpenRouter]:
    """A fresh FakeOpenRouter on 127.0.0.1 (random port); `fake.base_url` is its API base."""
    async with FakeOpenRouter() as fake:
        yield fake
