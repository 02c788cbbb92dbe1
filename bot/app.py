"""Wires the core from settings: store, OpenRouter client, image and attachment pipelines, conversations."""

from __future__ import annotations

from urllib.parse import urlsplit

from bot.attachments import AttachmentPipeline
from bot.config import ConfigError, Secrets, Settings
from bot.conversations import Conversations
from bot.images import ImagePipeline
from bot.inbox import Inbox
from bot.leases import RedisLeases
from bot.ledger import open_ledger
from bot.openrouter import OpenRouterClient
from bot.ratelimit import RedisRateLimiter
from bot.store import open_store
from bot.store.redis import RedisStore

__all__ = ["build_conversations", "trusted_image_hosts"]


def trusted_image_hosts(secrets: Secrets) -> list[str]:
    """Hosts of overridden platform API bases: their files are fetched like the platform's own."""
    hosts = []
    for base in (secrets.discord_api_base, secrets.slack_api_url):
        host = urlsplit(base).hostname if base else None
        if host:
            hosts.append(host)
    return hosts


def build_conversations(settings: Settings, secrets: Secrets) -> Conversations:
    """The Conversations service for this process (call `start()` before use, `close()` after)."""
    if secrets.openrouter_api_key is None or not secrets.openrouter_api_key.get_secret_value():
        raise ConfigError(
            "OPENROUTER_API_KEY is not set: create a key at https://openrouter.ai/keys and export it"
        )
    client = OpenRouterClient(settings, secrets.openrouter_api_key.get_secret_value())
    images = ImagePipeline(settings, trusted_hosts=trusted_image_hosts(secrets))
    attachments = AttachmentPipeline(settings, images)  # every file, sniffed; images go to `images`
    store_url = settings.resolved_store_url()
    store = open_store(store_url, retention_days=settings.retention_days)
    if not isinstance(store, RedisStore):
        # SQLite or memory: Conversations keeps rate limits and leases in this process.
        return Conversations(
            settings,
            store=store,
            client=client,
            images=images,
            attachments=attachments,
            ledger=open_ledger(store_url),
        )
    # Redis: rate limits, conversation leases and the ledger live there too, on the store's pool.
    return Conversations(
        settings,
        store=store,
        client=client,
        images=images,
        attachments=attachments,
        limiter=RedisRateLimiter(store_url, settings.user_messages_per_minute, client=store.client),
        leases=RedisLeases(store_url, client=store.client, ttl_seconds=settings.lease_ttl_seconds),
        ledger=open_ledger(store_url, redis=store.client),
        inbox=Inbox(store, settings.inbox, shared=True),
    )
