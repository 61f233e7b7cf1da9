"""The SSRF guard: pure address checks, then real aiohttp requests and TCP connects on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from ipaddress import IPv4Network, IPv6Network, ip_address

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from dispatch.security.ssrf import (
    ALWAYS_BLOCKED,
    PRIVATE,
    AddressPolicy,
    SsrfBlocked,
    check_url,
    open_guarded_connection,
    ssrf_cause,
)
from dispatch.security.ssrf_http import GuardedResolver, guarded_connector

NO_ALLOWLIST = AddressPolicy()
LOOPBACK_ALLOWED = AddressPolicy.from_strings(["127.0.0.0/8", "::1/128"])
EVERYTHING_ALLOWED = AddressPolicy.from_strings(["0.0.0.0/0", "::/0"])
PUBLIC = "93.184.216.34"
METADATA = "169.254.169.254"
THIS_HOST = "0.0.0.0"  # noqa: S104 - Linux connects it to localhost; refused, never bound


# --- AddressPolicy ------------------------------------------------------------------------------


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    NO_ALLOWLIST.check(address)
    assert NO_ALLOWLIST.allows(address)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "::1",
        "10.0.0.1",
        "172.16.5.4",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "fc00::1",
        "fd12:3456::1",
        "198.18.0.1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
    ],
)
def test_private_and_loopback_are_refused_with_a_hint(address: str) -> None:
    assert not NO_ALLOWLIST.allows(address)
    with pytest.raises(SsrfBlocked) as caught:
        NO_ALLOWLIST.check(address)
    assert caught.value.address == address
    assert "private or loopback" in caught.value.reason
    assert address in str(caught.value)
    assert "allow it with GATEWAY_ALLOWED_NETWORKS" in str(caught.value)


@pytest.mark.parametrize(
    "address",
    [
        METADATA,
        "169.254.0.1",
        "fe80::1",
        "fe80::1%eth0",
        "fd00:ec2::254",
        "100.100.100.200",
        THIS_HOST,
        "0.1.2.3",
        "::",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "240.0.0.1",
        "255.255.255.255",
        "::ffff:169.254.169.254",
    ],
)
def test_metadata_link_local_and_special_ranges_are_never_allowed(address: str) -> None:
    with pytest.raises(SsrfBlocked, match="never allowed") as caught:
        EVERYTHING_ALLOWED.check(address)
    assert caught.value.address == address
    assert "GATEWAY_ALLOWED_NETWORKS" in str(caught.value)
    assert not EVERYTHING_ALLOWED.allows(address)


def test_allowlist_opens_private_ranges_including_mapped_forms() -> None:
    policy = AddressPolicy.from_strings(["10.0.0.0/8"])
    assert policy.allows("10.1.2.3")
    assert policy.allows("::ffff:10.0.0.1")
    assert not policy.allows("192.168.0.1")
    assert not policy.allows("::1")


def test_metadata_refused_even_with_allowlist_covering_it() -> None:
    policy = AddressPolicy.from_strings(["0.0.0.0/0", "169.254.0.0/16", "100.64.0.0/10"])
    assert not policy.allows(METADATA)
    assert not policy.allows("100.100.100.200")
    assert policy.allows("100.64.0.1")


@pytest.mark.parametrize("address", ["localhost", "", "127.1", "2130706433", "1.2.3.4.5"])
def test_non_ip_input_is_refused(address: str) -> None:
    with pytest.raises(SsrfBlocked, match="not an IP address"):
        NO_ALLOWLIST.check(address)


def test_from_strings_parses_and_strips() -> None:
    policy = AddressPolicy.from_strings([" 10.0.0.0/8", "fd00::/8 ", "192.168.1.7"])
    assert [str(network) for network in policy.allowed_networks] == [
        "10.0.0.0/8",
        "fd00::/8",
        "192.168.1.7/32",
    ]


@pytest.mark.parametrize("text", ["garbage", "", "10.0.0.1/8", "300.0.0.0/8", "10.0.0.0/33"])
def test_from_strings_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="GATEWAY_ALLOWED_NETWORKS"):
        AddressPolicy.from_strings(["10.0.0.0/8", text])


def test_range_tables_cover_the_documented_addresses() -> None:
    def covered(address: str, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
        return any(ip_address(address) in network for network in networks)

    for address in (METADATA, "fd00:ec2::254", "100.100.100.200", "fe80::1", THIS_HOST):
        assert covered(address, ALWAYS_BLOCKED)
    for address in ("127.0.0.1", "::1", "10.0.0.1", "172.16.0.1", "192.168.0.1", "198.19.0.1"):
        assert covered(address, PRIVATE)


# --- check_url ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/", "file:///etc/passwd", "http:///path", "example.com/path", "gopher://x"],
)
def test_check_url_requires_http_and_a_host(url: str) -> None:
    with pytest.raises(ValueError, match=r"scheme|host"):
        check_url(url, EVERYTHING_ALLOWED)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.1/",
    ],
)
def test_check_url_refuses_private_ip_literals(url: str) -> None:
    with pytest.raises(SsrfBlocked, match="GATEWAY_ALLOWED_NETWORKS"):
        check_url(url, NO_ALLOWLIST)


@pytest.mark.parametrize(
    "url", [f"http://{METADATA}/latest/meta-data/", "http://[fe80::1%25eth0]/"]
)
def test_check_url_refuses_metadata_literals_despite_allowlist(url: str) -> None:
    with pytest.raises(SsrfBlocked, match="never allowed"):
        check_url(url, EVERYTHING_ALLOWED)


@pytest.mark.parametrize("url", ["http://2130706433/", "http://127.1/", "http://127.0.0.01/"])
def test_check_url_refuses_non_canonical_numeric_hosts(url: str) -> None:
    with pytest.raises(ValueError, match="not a canonical IP address"):
        check_url(url, EVERYTHING_ALLOWED)


@pytest.mark.parametrize(
    "url", ["https://example.com/hook", f"http://{PUBLIC}:8443/x", "https://localhost/"]
)
def test_check_url_passes_public_literals_and_names(url: str) -> None:
    # Names are checked at connect time by the resolver, not here.
    check_url(url, NO_ALLOWLIST)


def test_check_url_allows_allowlisted_literal() -> None:
    check_url("http://127.0.0.1:9/", LOOPBACK_ALLOWED)


# --- ssrf_cause -------------------------------------------------------------------------------


class _WrappedOsError(Exception):
    def __init__(self, os_error: BaseException) -> None:
        super().__init__("wrapped")
        self.os_error = os_error


def test_ssrf_cause_walks_cause_context_os_error_and_groups() -> None:
    blocked = SsrfBlocked(METADATA, "test")
    assert ssrf_cause(blocked) is blocked
    caused = RuntimeError("outer")
    caused.__cause__ = blocked
    assert ssrf_cause(caused) is blocked
    contextual = ValueError("outer")
    contextual.__context__ = caused
    assert ssrf_cause(contextual) is blocked
    assert ssrf_cause(_WrappedOsError(blocked)) is blocked
    assert ssrf_cause(ExceptionGroup("many", [ValueError("x"), caused])) is blocked


def test_ssrf_cause_none_for_plain_errors_and_survives_cycles() -> None:
    first, second = OSError("a"), OSError("b")
    first.__context__, second.__context__ = second, first
    assert ssrf_cause(first) is None
    assert ssrf_cause(ConnectionRefusedError()) is None


# --- GuardedResolver with a scripted inner resolver (the only stand-in in this file) -------------


class ScriptedResolver(AbstractResolver):
    """Answers each resolve with the next scripted list of addresses, as a rebinding DNS would."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [_result(host, address, port) for address in addresses]

    async def close(self) -> None:
        self.closed = True


def _result(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)


async def test_rebinding_second_answer_is_refused() -> None:
    inner = ScriptedResolver([PUBLIC], ["127.0.0.1"])
    resolver = GuardedResolver(NO_ALLOWLIST, inner)
    first = await resolver.resolve("rebind.example", 443)
    assert [result["host"] for result in first] == [PUBLIC]
    with pytest.raises(SsrfBlocked) as caught:
        await resolver.resolve("rebind.example", 443)
    assert caught.value.address == "127.0.0.1"
    assert caught.value.host == "rebind.example"
    assert "resolved from rebind.example" in str(caught.value)
    assert inner.calls == 2


async def test_mixed_answer_keeps_only_allowed_addresses() -> None:
    inner = ScriptedResolver([METADATA, PUBLIC, "10.0.0.1", "2606:4700:4700::1111"])
    results = await GuardedResolver(NO_ALLOWLIST, inner).resolve("mixed.example", 80)
    assert [result["host"] for result in results] == [PUBLIC, "2606:4700:4700::1111"]


async def test_all_refused_reports_the_first_refusal() -> None:
    inner = ScriptedResolver(["10.0.0.1", METADATA])
    with pytest.raises(SsrfBlocked) as caught:
        await GuardedResolver(NO_ALLOWLIST, inner).resolve("internal.example", 80)
    assert caught.value.address == "10.0.0.1"


async def test_empty_answer_is_a_plain_os_error() -> None:
    with pytest.raises(OSError, match="no addresses"):
        await GuardedResolver(NO_ALLOWLIST, ScriptedResolver([])).resolve("void.example", 80)


async def test_close_closes_the_inner_resolver() -> None:
    inner = ScriptedResolver([PUBLIC])
    await GuardedResolver(NO_ALLOWLIST, inner).close()
    assert inner.closed


# --- real requests against a loopback server ----------------------------------------------------


class Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.hits = 0

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    app = web.Application()
    state = Server(0)

    async def hello(_: web.Request) -> web.Response:
        state.hits += 1
        return web.Response(text="hello")

    async def to_metadata(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://{METADATA}/latest/meta-data/")

    app.router.add_get("/", hello)
    app.router.add_get("/to-metadata", to_metadata)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_loopback_literal_refused_by_check_url(server: Server) -> None:
    with pytest.raises(SsrfBlocked) as caught:
        check_url(server.url(), NO_ALLOWLIST)
    assert caught.value.address == "127.0.0.1"
    assert server.hits == 0


async def test_loopback_literal_refused_at_connect_even_without_check_url(server: Server) -> None:
    async with aiohttp.ClientSession(connector=guarded_connector(NO_ALLOWLIST)) as session:
        with pytest.raises(SsrfBlocked) as caught:
            await session.get(server.url())
    assert caught.value.address == "127.0.0.1"
    assert server.hits == 0


async def test_name_resolving_to_loopback_refused_by_resolver(server: Server) -> None:
    url = server.url(host="localhost")
    check_url(url, NO_ALLOWLIST)  # a name: only the resolver can judge it
    async with aiohttp.ClientSession(connector=guarded_connector(NO_ALLOWLIST)) as session:
        with pytest.raises(SsrfBlocked) as caught:
            await session.get(url)
    # aiohttp only wraps OSError, so the refusal is not mistaken for a connection error.
    assert not isinstance(caught.value, aiohttp.ClientError)
    blocked = ssrf_cause(caught.value)
    assert blocked is not None
    assert blocked.host == "localhost"
    assert blocked.address in ("127.0.0.1", "::1")
    assert "GATEWAY_ALLOWED_NETWORKS" in str(blocked)
    assert server.hits == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_allowlisted_loopback_request_succeeds(server: Server, host: str) -> None:
    url = server.url(host=host)
    check_url(url, LOOPBACK_ALLOWED)
    async with (
        aiohttp.ClientSession(connector=guarded_connector(LOOPBACK_ALLOWED)) as session,
        session.get(url) as response,
    ):
        assert response.status == 200
        assert await response.text() == "hello"
    assert server.hits == 1


async def test_redirect_to_metadata_refused_at_connect(server: Server) -> None:
    async with aiohttp.ClientSession(connector=guarded_connector(EVERYTHING_ALLOWED)) as session:
        with pytest.raises(SsrfBlocked) as caught:
            await session.get(server.url("/to-metadata"))
    assert caught.value.address == METADATA
    assert "never allowed" in caught.value.reason


async def test_connector_resolves_every_connection_so_rebinding_is_caught(server: Server) -> None:
    inner = ScriptedResolver(["127.0.0.1"], [METADATA])
    connector = guarded_connector(LOOPBACK_ALLOWED, inner_resolver=inner, force_close=True)
    url = f"http://rebind.example:{server.port}/"
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url) as response:
            assert response.status == 200
        with pytest.raises(SsrfBlocked) as caught:
            await session.get(url)
    assert caught.value.address == METADATA
    assert caught.value.host == "rebind.example"
    assert inner.calls == 2
    assert server.hits == 1


async def test_connector_refuses_overriding_the_guard() -> None:
    for override in ({"use_dns_cache": True}, {"resolver": GuardedResolver(NO_ALLOWLIST)}):
        with pytest.raises(TypeError):
            guarded_connector(NO_ALLOWLIST, **override)


# --- raw TCP checks -----------------------------------------------------------------------------


async def test_open_guarded_connection_connects_when_allowed(server: Server) -> None:
    address, seconds = await open_guarded_connection(
        "127.0.0.1", server.port, LOOPBACK_ALLOWED, timeout=5
    )
    assert address == "127.0.0.1"
    assert 0 <= seconds < 5


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_open_guarded_connection_refuses_loopback_without_allowlist(
    server: Server, host: str
) -> None:
    with pytest.raises(SsrfBlocked) as caught:
        await open_guarded_connection(host, server.port, NO_ALLOWLIST, timeout=5)
    assert caught.value.host == host


async def test_open_guarded_connection_refuses_metadata_without_network() -> None:
    with pytest.raises(SsrfBlocked, match="never allowed"):
        await open_guarded_connection(METADATA, 80, EVERYTHING_ALLOWED, timeout=5)


async def test_open_guarded_connection_reports_refused_port_as_os_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        await open_guarded_connection("127.0.0.1", closed_port, LOOPBACK_ALLOWED, timeout=5)
