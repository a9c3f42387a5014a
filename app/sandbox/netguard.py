"""URL safety for fetch_url: only http(s) to public addresses, checked on every hop.

The host is resolved once; every address must be public (not private, loopback, link-local,
multicast, reserved, unspecified, nor a cloud metadata endpoint), and the connection is then
pinned to the vetted address (see web.py) so a second, different DNS answer cannot be used.
`settings.fetch_allow_hosts` ("host" or "host:port") lets the test suite reach its own loopback
server; it applies per hop, so a redirect elsewhere is checked afresh.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

Resolver = Callable[[str, int], Awaitable[list[str]]]
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
            ipaddress.ip_address("100.100.100.200")}


class UrlRefused(ValueError):
    """The URL may not be fetched; the message says why."""


@dataclass(frozen=True)
class Target:
    """A vetted hop: where to connect (ip) and what to ask for (url, host)."""

    url: str
    scheme: str
    host: str
    port: int
    ip: str


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def is_public(ip: str) -> bool:
    """Whether `ip` is a globally routable unicast address (and no metadata endpoint)."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return not (addr in METADATA or addr.is_private or addr.is_loopback or addr.is_link_local
                or addr.is_multicast or addr.is_reserved or addr.is_unspecified
                or not addr.is_global)


def _allowed(host: str, port: int, allow_hosts: list[str]) -> bool:
    return host in allow_hosts or f"{host}:{port}" in allow_hosts


async def vet_url(url: str, allow_hosts: list[str], resolver: Resolver | None = None) -> Target:
    """Check one hop and resolve its host once; UrlRefused when it may not be fetched."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused(f"only http and https URLs may be fetched, not {scheme or 'none'!r}")
    if parts.username or parts.password:
        raise UrlRefused("URLs with credentials are not allowed")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UrlRefused("the URL has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise UrlRefused(f"bad port in URL: {exc}") from exc
    try:
        ips = await (resolver or system_resolver)(host, port)
    except OSError as exc:
        raise UrlRefused(f"cannot resolve {host}: {exc}") from exc
    if not ips:
        raise UrlRefused(f"{host} has no address")
    if not _allowed(host, port, allow_hosts):
        bad = [ip for ip in ips if not is_public(ip)]
        if bad:
            raise UrlRefused(f"{host} resolves to a non-public address ({bad[0]})")
    return Target(url=url, scheme=scheme, host=host, port=port, ip=ips[0])
