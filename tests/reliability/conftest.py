"""Every log record of the reliability suite, at DEBUG, is checked for the test tokens and keys."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.reliability.secrets_watch import WATCH


@pytest.fixture(scope="package", autouse=True)
def secrets_never_logged() -> Iterator[None]:
    """Watch the root logger at DEBUG for the whole package; fail its teardown if a secret showed."""
    root = logging.getLogger()
    level = root.level
    root.addHandler(WATCH)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(WATCH)
        root.setLevel(level)
    shown = "\n".join(f"{leak.source}: {leak.excerpt!r}" for leak in WATCH.leaks[:10])
    assert not WATCH.leaks, f"{len(WATCH.leaks)} log lines or outputs showed a secret:\n{shown}"
