"""SSRF guard for outbound connections: resolve, check every address, connect only to a checked one.

Where a refusal can happen, and what the caller sees:

- ``check_url`` before a request: ``ValueError`` for a URL that is not http(s) with a host,
  ``SsrfBlocked`` for a refused IP literal (aiohttp connects to literals without resolving).
- ``guarded_connector`` at connect time, for every request and every redirect hop:
  ``GuardedResolver`` drops refused addresses from each DNS answer and raises ``SsrfBlocked`` when
  none is left; a socket factory checks the exact address of every socket, so an IP literal
  reached without ``check_url`` (a redirect, say) is refused too. aiohttp only wraps ``OSError``
  into ``ClientConnectorError``, so ``SsrfBlocked`` leaves ``ClientSession.request`` unwrapped:
  ``except aiohttp.ClientError`` does not catch it, and ``ssrf_cause`` finds it either way.
- ``open_guarded_connection`` for raw TCP checks: ``SsrfBlocked``, ``OSError`` or ``TimeoutError``.

The guard sees the addresses the client connects to, so it does not protect a request sent through
an HTTP proxy (the proxy resolves the target): guarded sessions must not use ``proxy=`` or
``trust_env=True``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TypeVar

T = TypeVar("T")
Network = IPv4Network | IPv6Network

ALLOW_SETTING = "GATEWAY_ALLOWED_NETWORKS"

_ALWAYS_BLOCKED_LABELS: tuple[tuple[Network, str], ...] = (
    (IPv4Network("169.254.0.0/16"), "link-local (cloud metadata)"),
    (IPv6Network("fe80::/10"), "link-local"),
    (IPv6Network("fd00:ec2::254/128"), "AWS metadata"),
    (IPv4Network("100.100.100.200/32"), "Alibaba Cloud metadata"),
    (IPv4Network("0.0.0.0/8"), "'this network' (reaches the local host)"),
    (IPv6Network("::/128"), "unspecified"),
    (IPv4Network("224.0.0.0/4"), "multicast"),
    (IPv6Network("ff00::/8"), "multicast"),
    (IPv4Network("240.0.0.0/4"), "reserved"),
    (IPv4Network("255.255.255.255/32"), "broadcast"),
)
ALWAYS_BLOCKED: tuple[Network, ...] = tuple(network for network, _ in _ALWAYS_BLOCKED_LABELS)

PRIVATE: tuple[Network, ...] = (
    IPv4Network("127.0.0.0/8"),
    IPv6Network("::1/128"),
    IPv4Network("10.0.0.0/8"),
    IPv4Network("172.16.0.0/12"),
    IPv4Network("192.168.0.0/16"),
    IPv4Network("100.64.0.0/10"),
    IPv6Network("fc00::/7"),
    IPv4Network("198.18.0.0/15"),
)


class SsrfBlocked(Exception):
    """An outbound connection refused because of the address it would reach."""

    def __init__(self, address: str, reason: str, *, host: str | None = None) -> None:
        self.address = address
        self.reason = reason
        self.host = host
        via = f" (resolved from {host})" if host is not None and host != address else ""
        super().__init__(f"refused to connect to {address}{via}: {reason}")


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses outbound connections may reach: public ones, plus allowed private ranges."""

    allowed_networks: tuple[Network, ...] = ()

    @classmethod
    def from_strings(cls, networks: Iterable[str]) -> AddressPolicy:
        """A policy from CIDR strings (``GATEWAY_ALLOWED_NETWORKS``); ValueError on a bad one."""
        return cls(tuple(_parse_network(text) for text in networks))

    def check(self, address: str) -> None:
        """Raise ``SsrfBlocked`` unless a connection to this IP address is allowed."""
        try:
            ip = _unmapped(ipaddress.ip_address(address))
        except ValueError:
            raise SsrfBlocked(address, "not an IP address") from None
        for network, label in _ALWAYS_BLOCKED_LABELS:
            if ip in network:
                reason = f"{label} range {network}, never allowed, not even by {ALLOW_SETTING}"
                raise SsrfBlocked(address, reason)
        if any(ip in network for network in self.allowed_networks):
            return
        for network in PRIVATE:
            if ip in network:
                reason = f"private or loopback range {network}; allow it with {ALLOW_SETTING}"
                raise SsrfBlocked(address, reason)

    def allows(self, address: str) -> bool:
        """Whether ``check`` accepts the address."""
        try:
            self.check(address)
        except SsrfBlocked:
            return False
        return True


def check_url(url: str, policy: AddressPolicy) -> None:
    """Refuse a URL that is not http(s) with a host (ValueError) or names a refused IP literal."""
    # yarl parses the URL exactly as aiohttp will when it connects; it is loaded on first use.
    from yarl import URL

    parsed = URL(url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"URL scheme must be http or https, not {parsed.scheme!r}")
    host = parsed.raw_host
    if not host:
        raise ValueError("URL has no host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # aiohttp skips the resolver for hosts of this shape, so only a real IP may pass.
        if ":" in host or host.replace(".", "").isdigit():
            raise ValueError(f"URL host {host!r} is not a canonical IP address") from None
        return
    policy.check(host)


def ssrf_cause(exc: BaseException) -> SsrfBlocked | None:
    """The ``SsrfBlocked`` behind an exception, following causes, contexts and ``os_error``."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, SsrfBlocked):
            return current
        linked = (current.__cause__, current.__context__, getattr(current, "os_error", None))
        pending.extend(link for link in linked if isinstance(link, BaseException))
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
    return None


async def open_guarded_connection(
    host: str,
    port: int,
    policy: AddressPolicy,
    # One budget for resolving and connecting, as a health check configures it per resource.
    timeout: float,  # noqa: ASYNC109
) -> tuple[str, float]:
    """Resolve, check, TCP-connect to the first allowed address and close; (address, seconds)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        answer = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        allowed = keep_allowed(policy, host, answer, lambda info: str(info[4][0]))
        family, type_, proto, _, sockaddr = allowed[0]
        # Connect to the checked sockaddr itself: connecting by name would resolve again.
        with socket.socket(family, type_, proto) as sock:
            sock.setblocking(False)
            started = loop.time()
            await loop.sock_connect(sock, sockaddr)
            return str(sockaddr[0]), loop.time() - started


def _parse_network(text: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip())
    except ValueError as exc:
        raise ValueError(f"{ALLOW_SETTING}: {text!r} is not a network in CIDR form") from exc


def _unmapped(ip: IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
    # ::ffff:a.b.c.d reaches the IPv4 host a.b.c.d, so it is judged as that address.
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def keep_allowed(
    policy: AddressPolicy, host: str, answer: Sequence[T], address_of: Callable[[T], str]
) -> list[T]:
    """The entries of a DNS answer the policy allows; ``SsrfBlocked`` when there are none."""
    kept: list[T] = []
    first_refusal: SsrfBlocked | None = None
    for entry in answer:
        try:
            policy.check(address_of(entry))
        except SsrfBlocked as exc:
            first_refusal = first_refusal or exc
        else:
            kept.append(entry)
    if kept:
        return kept
    if first_refusal is None:
        raise OSError(f"{host} resolved to no addresses")
    raise SsrfBlocked(first_refusal.address, first_refusal.reason, host=host)
