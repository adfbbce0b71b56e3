"""Webhook URL vetting: refuse URLs that would make the service call into private networks (SSRF).

`validate_url_syntax` is the quick, I/O-free check for submit time; `check_url` also resolves the
host and vets every address it resolves to. The sender connects only to the addresses `check_url`
returned, so a DNS answer that changes between check and connect (rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable

import httpx

from shared.errors import InvalidWebhookUrl

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

DEFAULT_PORTS = {"http": 80, "https": 443}
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
SHARED_SPACE = ipaddress.ip_network("100.64.0.0/10")
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
_FLAGS = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_reserved", "reserved"),
    ("is_private", "private"),
)

RESOLVE_TIMEOUT_S = 5.0


def validate_url_syntax(url: str) -> httpx.URL:
    """Parse `url` and refuse anything but http(s)://host[:port]/… without credentials."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidWebhookUrl(f"webhook_url is not a valid URL: {exc}") from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise InvalidWebhookUrl("webhook_url must use http or https")
    if not parsed.host:
        raise InvalidWebhookUrl("webhook_url must include a host")
    if parsed.userinfo:
        raise InvalidWebhookUrl("webhook_url must not include a username or password")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidWebhookUrl("webhook_url port must be between 1 and 65535")
    return parsed


async def check_url(
    url: str, *, allow_private: bool, resolve: Resolver | None = None
) -> list[IPAddress]:
    """Validate `url`, resolve its host and return the addresses it is safe to connect to.

    Raises InvalidWebhookUrl when the URL is malformed, does not resolve, or when any address it
    resolves to is refused (unless `allow_private`).
    """
    parsed = validate_url_syntax(url)
    host = parsed.raw_host.decode("ascii")
    literal = _ip_literal(host)
    if literal is not None:
        return [_vetted_literal(host, literal, allow_private)]
    port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    try:
        addresses = await _resolve(host, port, resolve or system_resolve)
    except _Unresolved as exc:
        if allow_private:
            raise InvalidWebhookUrl(f"webhook_url host {host!r} {exc}") from None
        raise _not_public(host, str(exc)) from None
    if not allow_private:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                raise _not_public(host, f"resolves to {address} ({reason})")
    return addresses


def _vetted_literal(host: str, address: IPAddress, allow_private: bool) -> IPAddress:
    """An address the caller wrote itself: naming what kind it is tells them nothing new."""
    reason = None if allow_private else refusal_reason(address)
    if reason is not None:
        raise InvalidWebhookUrl(f"webhook_url address {host} is a {reason} address: not allowed")
    return address


def _not_public(host: str, why: str) -> InvalidWebhookUrl:
    """One answer whether the name does not resolve or resolves to an internal address: the
    caller must learn neither what it resolved to nor whether an internal name exists."""
    log.info("webhook_url host %r refused: it %s", host, why)
    return InvalidWebhookUrl(
        f"webhook_url host {host!r} is not allowed: it does not resolve to a public address"
    )


def refusal_reason(address: IPAddress) -> str | None:
    """Why a webhook may not be sent to `address`, or None when it is publicly routable."""
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return refusal_reason(embedded)
    for flag, label in _FLAGS:
        if getattr(address, flag):
            return label
    if address in SHARED_SPACE:
        return "shared (carrier-grade NAT)"
    if not address.is_global:
        return "non-public"
    return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, 6to4 or NAT64 (64:ff9b::/96) address stands for."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


async def system_resolve(host: str, port: int) -> list[str]:
    """Resolve with the event loop's getaddrinfo (runs in a thread; never blocks the loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _Unresolved(Exception):
    """The host has no address (its text says why, for the log)."""


async def _resolve(host: str, port: int, resolve: Resolver) -> list[IPAddress]:
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            answers = await resolve(host, port)
    except TimeoutError:
        raise _Unresolved("did not resolve in time") from None
    except (OSError, UnicodeError) as exc:  # UnicodeError: an empty or over-long DNS label
        raise _Unresolved(f"does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(a.split("%")[0]) for a in answers))
    if not addresses:
        raise _Unresolved("does not resolve")
    return addresses


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
