"""Which hosts images may be fetched from, and the resolver that keeps fetches off private networks."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from bot.images.errors import ImageRefused

__all__ = [
    "PLATFORM_FILE_HOSTS",
    "GuardedResolver",
    "HostPolicy",
    "is_public_address",
    "normalise_host",
]

# Where Discord and Slack serve attachments. Discord's external-image proxy
# (images-ext-*.discordapp.net) and Slack's static CDN (*.slack-edge.com) are
# left out on purpose: they serve other people's URLs or avatars, not attachments.
PLATFORM_FILE_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net", "files.slack.com"})
# Slack's variants of its file host: files-origin, files-edu, files-pri, files-tmb, ...
_SLACK_FILE_HOST = re.compile(r"files(?:-[a-z0-9]+)+\.slack\.com")
_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
ALLOWED_SCHEMES = ("http", "https")


def normalise_host(entry: str) -> str | None:
    """The bare lower-case host of "host", "host:port" or "scheme://host:port/path"; None if empty."""
    entry = entry.strip()
    if not entry:
        return None
    try:
        host = URL(entry if "://" in entry else f"http://{entry}").raw_host
    except ValueError:
        return None
    return host.lower().rstrip(".") if host else None


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address; False for loopback, private, link-local, reserved."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64_PREFIX:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    special = (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )
    return ip.is_global and not special


class HostPolicy:
    """The DESIGN contract: platform file hosts (public addresses, https only) plus named trusted hosts."""

    def __init__(self, trusted_hosts: Iterable[str] = ()) -> None:
        self._trusted = frozenset(h for h in map(normalise_host, trusted_hosts) if h)

    @property
    def trusted_hosts(self) -> frozenset[str]:
        return self._trusted

    def is_trusted(self, host: str) -> bool:
        """Hosts the operator named: fetched over http or https, even on loopback or private addresses."""
        return host.lower().rstrip(".") in self._trusted

    @staticmethod
    def is_platform(host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in PLATFORM_FILE_HOSTS or _SLACK_FILE_HOST.fullmatch(host) is not None

    async def check(self, url: URL, name: str) -> None:
        """Raise ImageRefused unless `url` may be fetched; resolves platform hosts to vet their addresses."""
        if url.scheme not in ALLOWED_SCHEMES:
            raise ImageRefused(
                f"{name} has a {url.scheme or 'relative'} link; only http and https downloads are allowed.",
                reason="scheme",
            )
        host = (url.raw_host or "").lower().rstrip(".")
        if not host:
            raise ImageRefused(f"{name} has a link without a host.", reason="no_host")
        if self.is_trusted(host):
            return
        if not self.is_platform(host):
            raise ImageRefused(
                f"{name} is on {host}, which is not an allowed image host.", reason="host"
            )
        if url.scheme != "https":
            raise ImageRefused(
                f"{name} has an http:// link; file hosts are fetched over https only.",
                reason="scheme",
            )
        await self._check_addresses(host, url.port or 443, name)

    @staticmethod
    async def _check_addresses(host: str, port: int, name: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise ImageRefused(
                f"{name} could not be downloaded: its host {host} was not found.", reason="dns"
            ) from None
        addresses = {str(info[4][0]) for info in infos}
        if not addresses or not all(is_public_address(a) for a in addresses):
            raise ImageRefused(
                f"{name} is on a host that points to a private network address, which is never fetched.",
                reason="private_address",
            )


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that drops non-public addresses of untrusted hosts at connect time (no DNS rebinding)."""

    def __init__(self, policy: HostPolicy) -> None:
        self._policy = policy
        self._inner: ThreadedResolver | None = None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        if self._policy.is_trusted(host):
            return results
        public = [result for result in results if is_public_address(result["host"])]
        if not public:
            raise OSError(f"{host} resolves only to non-public addresses")
        return public

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
