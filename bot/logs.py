"""Log setup: human-readable or JSON lines, with secrets scrubbed from every record."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time

__all__ = ["RedactingFilter", "redact", "setup_logging"]

SECRET_ENV_NAMES = (
    "OPENROUTER_API_KEY",
    "DISCORD_TOKEN",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
)
# Token shapes worth hiding even when they did not come from our environment.
SECRET_PATTERN = re.compile(
    r"(sk-or-v1-[0-9A-Za-z]{8,}|xox[abposr]-[0-9A-Za-z-]{8,}|xapp-[0-9A-Za-z-]{8,}|Bearer\s+[^\s'\"]{8,})"
)
MASK = "[redacted]"


def redact(text: str) -> str:
    """The text with our secrets' values and anything shaped like a token masked."""
    for name in SECRET_ENV_NAMES:
        value = os.environ.get(name)
        if value and len(value) >= 6:
            text = text.replace(value, MASK)
    return SECRET_PATTERN.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """Renders each record's message once, scrubbed, so no handler can print a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries log request URLs and headers at DEBUG; keep them quiet unless asked.
    for noisy in ("httpx", "httpx2", "openai", "aiohttp.access", "discord.gateway"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
