"""The SSRF guard for aiohttp: a resolver and a socket factory that check every address.

Kept apart from ``dispatch.security.ssrf`` so that only a process that sends requests
imports aiohttp (about 20 MB of an idle server's memory otherwise).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from dispatch.security.ssrf import AddressPolicy, keep_allowed

if TYPE_CHECKING:
    from aiohappyeyeballs import AddrInfoType


class GuardedResolver(AbstractResolver):
    """A resolver that drops refused addresses and raises ``SsrfBlocked`` when none is left."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The inner resolver's answer, keeping only the addresses the policy allows."""
        answer = await self._inner.resolve(host, port, family=family)
        return keep_allowed(self._policy, host, answer, lambda result: result["host"])

    async def close(self) -> None:
        """Close the inner resolver."""
        await self._inner.close()


def guarded_connector(
    policy: AddressPolicy,
    *,
    inner_resolver: AbstractResolver | None = None,
    **connector_kwargs: Any,
) -> aiohttp.TCPConnector:
    """A TCPConnector that checks every resolved address and every socket it opens."""
    # No DNS cache: every connection resolves afresh, so a rebinding answer is checked too.
    # Passing resolver, use_dns_cache or socket_factory again is a TypeError, on purpose.
    return aiohttp.TCPConnector(
        resolver=GuardedResolver(policy, inner_resolver),
        use_dns_cache=False,
        socket_factory=_guarded_socket_factory(policy),
        **connector_kwargs,
    )


def _guarded_socket_factory(policy: AddressPolicy) -> Callable[[AddrInfoType], socket.socket]:
    def create(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        # A single address is tried outside happy-eyeballs racing, so SsrfBlocked propagates
        # as is; several addresses only come from GuardedResolver, which already checked them.
        policy.check(str(sockaddr[0]))
        return socket.socket(family, type_, proto)

    return create
