"""A log handler that looks for the test suite's tokens and keys in every record and process output."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tests.fakes.openrouter import FAKE_API_KEY
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET

__all__ = ["DISCORD_TOKEN", "REDIS_PASSWORD", "TEST_SECRETS", "WATCH", "Leak", "SecretWatch"]

DISCORD_TOKEN = "fake-discord-token"  # FakeDiscord's default token
REDIS_PASSWORD = "hunter2-redis-pass"  # used in URLs of a Redis that is not there
TEST_SECRETS = (FAKE_API_KEY, BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, DISCORD_TOKEN, REDIS_PASSWORD)
SHOWN_CHARS = 200


@dataclass(frozen=True, slots=True)
class Leak:
    """Where a secret turned up: the logger (or process) and the start of the line."""

    source: str
    excerpt: str


class SecretWatch(logging.Handler):
    """Formats every record (message and traceback) and remembers any that shows a test secret."""

    def __init__(self, secrets: tuple[str, ...] = TEST_SECRETS) -> None:
        super().__init__(logging.DEBUG)
        self.secrets = secrets
        self.records = 0
        self.outputs = 0
        self.leaks: list[Leak] = []
        self.leaked_elsewhere = 0  # leaks seen by pytest-xdist workers (they fail there)
        self._formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        try:
            text = self._formatter.format(record)
        except Exception as exc:  # a record that cannot be formatted is not ours to judge
            text = f"(unformattable record: {exc!r})"
        self._check(record.name, text)

    def scan(self, source: str, text: str) -> None:
        """Check what a subprocess wrote (its stderr log lines, its stdout)."""
        self.outputs += 1
        self._check(source, text)

    def _check(self, source: str, text: str) -> None:
        for secret in self.secrets:
            at = text.find(secret)
            if at >= 0:
                start = max(0, at - SHOWN_CHARS // 2)
                self.leaks.append(Leak(source, text[start : start + SHOWN_CHARS]))


# The one watch of a test run: conftest attaches it to the root logger; process helpers feed it.
WATCH = SecretWatch()
