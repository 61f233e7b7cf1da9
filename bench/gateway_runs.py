"""How bench/gateway.py measures each workload (no figures are judged here).

Ingest is loaded with wrk. Everything that ends in a delivery is posted from this process
(closed-loop bursts, or open-loop at a fixed rate) with the send time stamped into the JSON
body; the sink writes down when each request arrived, so latencies are read off the sink's
clock and the benchmark's, on the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from bench.common import REPO_ROOT, Latency, base_env
from bench.loadgen import LoadResult, run_wrk
from bench.serving import SERVER_CPUS, RunningServer, pin_to

CLIENT_SCRIPT = REPO_ROOT / "bench" / "gateway_client.py"
# A typical small webhook body (the gateway tests' payload); ``sent_at`` is added per request.
PAYLOAD: dict[str, Any] = {
    "ref": "req-987654",
    "scope": "production",
    "event_id": "evt_abc123",
    "user_id": 42,
}
TOKEN_HEADER = "X-API-Token"  # noqa: S105 - a header name
INGEST_CONCURRENCY = (8, 64)
POST_CONCURRENCY = 64  # the burst poster's connections
DELIVERY_CONCURRENCY = 64  # WORKER_CONCURRENCY of the delivery runs, and the bare clients'
CLIENT_CHOICES = ("aiohttp", "httpx")
LATENCY_RATE = 100  # tasks per second, paced
FAILOVER_RATE = 20  # tasks per second, paced, spread over the failover routes
WARMUP_TASKS = 50
STATS_POLL_SECONDS = 0.05
WRK_TIMEOUT_SECONDS = 10
IN_FLIGHT_WAIT_SECONDS = 45.0  # the memory run's longest wait for every delivery to be held
RSS_POLL_SECONDS = 0.02
Alive = Callable[[], None]


class DeliveryTimeout(RuntimeError):
    """The sink did not receive every task in time."""


@dataclass(frozen=True)
class Delivered:
    """One burst: ``tasks`` posted as fast as possible, from the first 202 to the last arrival."""

    tasks: int  # accepted (202)
    delivered: int  # distinct tasks that reached the sink before the benchmark gave up
    seconds: float  # first 202 to the last arrival
    posting_seconds: float  # first 202 to last 202: how long the ingest part took
    duplicates: int  # deliveries beyond one per task (at-least-once redeliveries)
    refused: int  # POSTs answered with anything but 202: not tasks, not counted

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    @property
    def undelivered(self) -> int:
        return self.tasks - self.delivered

    def as_json(self) -> dict[str, object]:
        return asdict(self) | {"rate": self.rate}


@dataclass(frozen=True)
class ClientRun:
    """A bare client posting to the sink for a fixed time."""

    client: str
    requests: int
    errors: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, object]:
        return asdict(self) | {"rate": self.rate}


@dataclass(frozen=True)
class Memory:
    """RSS of the serving process, idle and at its peak while deliveries were held open."""

    idle_mb: float
    peak_mb: float
    in_flight_max: int  # requests the sink held at once
    tasks: int
    refused: int
    build_up_seconds: float  # from the burst's start until the sink held every task (or gave up)

    def as_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Posted:
    """What a poster got back: when each 202 arrived, per route, and how many POSTs failed."""

    accepted: dict[str, list[float]]
    refused: int = 0
    first_error: str = ""

    def times(self) -> list[float]:
        return [at for route in self.accepted.values() for at in route]

    def count(self, route: str | None = None) -> int:
        if route is None:
            return sum(len(times) for times in self.accepted.values())
        return len(self.accepted.get(route, []))

    def note(self, route: str, answer: float | str) -> None:
        if isinstance(answer, float):
            self.accepted.setdefault(route, []).append(answer)
            return
        self.refused += 1
        self.first_error = self.first_error or answer

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def body(seq: int = 0) -> bytes:
    """The JSON body of one task, stamped with the wall-clock time just before sending."""
    return json.dumps(PAYLOAD | {"seq": seq, "sent_at": time.time()}).encode()


def write_post_script(path: Path) -> Path:
    """A wrk script turning every request into a JSON POST of the payload."""
    text = json.dumps(PAYLOAD | {"seq": 0, "sent_at": 0.0})
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{text}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n',
        encoding="utf-8",
    )
    return path


def ingest_once(url: str, token: str, script: Path, connections: int, seconds: int) -> LoadResult:
    """One measured wrk run of POSTs at ``connections``, after a one-second warm-up.

    Failed requests are counted, not fatal: an overloaded server answering 500 or not at all
    within WRK_TIMEOUT_SECONDS is a result, shown beside the throughput of 2xx answers.
    """
    options: dict[str, Any] = {
        "connections": connections,
        "script": script,
        "timeout_seconds": WRK_TIMEOUT_SECONDS,
        "allow_errors": True,
    }
    headers = {TOKEN_HEADER: token}
    run_wrk(url, 1, headers, **options)
    result = run_wrk(url, seconds, headers, **options)
    print(
        f"  {url} -c{connections}: {result.successes_per_second:,.0f} req/s, "
        f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
        f"{result.non_2xx} non-2xx, {result.socket_errors} socket errors",
        file=sys.stderr,
    )
    return result


def alive_check(*servers: RunningServer) -> Alive:
    def check() -> None:
        for server in servers:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.base_url} exited with {server.process.returncode}")

    return check


class SinkControl:
    """Reads and resets what the sink (bench/gateway_sink.py) received."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.AsyncClient(base_url=base_url, timeout=30)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    async def close(self) -> None:
        await self._http.aclose()

    async def reset(self) -> None:
        (await self._http.post("/_reset")).raise_for_status()

    async def release(self) -> None:
        """Answer every request the sink is holding."""
        (await self._http.post("/_release")).raise_for_status()

    async def stats(self) -> dict[str, Any]:
        response = await self._http.get("/_stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    async def arrivals(self, path: str) -> list[tuple[str, float | None, float]]:
        """(task header, sent_at, arrived_at) per request on ``path``, in arrival order."""
        response = await self._http.get("/_records", params={"path": path})
        response.raise_for_status()
        return [(str(task), sent, float(arrived)) for task, sent, arrived in response.json()]

    async def wait_for(
        self, path: str, tasks: int, alive: Alive, *, strict: bool = True
    ) -> dict[str, Any]:
        """Until ``tasks`` distinct tasks arrived on ``path``; that path's summary.

        Gives up after ``deadline_seconds(tasks)``: raises when ``strict``, else returns what
        arrived by then (``distinct_tasks`` says how many).
        """
        limit = deadline_seconds(tasks)
        deadline = time.monotonic() + limit
        while True:
            summary: dict[str, Any] = (await self.stats())["paths"].get(path, {})
            summary.setdefault("distinct_tasks", 0)
            summary.setdefault("count", 0)
            if summary["distinct_tasks"] >= tasks:
                return summary
            alive()
            if time.monotonic() > deadline:
                message = (
                    f"{summary['distinct_tasks']} of {tasks} tasks reached {path} in {limit:.0f} s"
                )
                if strict:
                    raise DeliveryTimeout(message)
                print(f"  gave up: {message}", file=sys.stderr)
                return summary
            await asyncio.sleep(STATS_POLL_SECONDS)


def deadline_seconds(tasks: int) -> float:
    """How long to wait for ``tasks`` deliveries: generous, at 50 deliveries/s or better."""
    return 20.0 + tasks / 50


async def _post(session: aiohttp.ClientSession, url: str, token: str, seq: int) -> float | str:
    """POST one task: the wall-clock time its 202 arrived, or what went wrong."""
    headers = {TOKEN_HEADER: token, "Content-Type": "application/json"}
    try:
        async with session.post(url, data=body(seq), headers=headers) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"POST {url}: {type(exc).__name__}: {exc}"
    if response.status != 202:
        return f"POST {url} answered {response.status}: {text[:300]}"
    return time.time()


@contextlib.asynccontextmanager
async def _poster(connections: int) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


def _report(posted: Posted) -> None:
    if posted.refused:
        print(f"  {posted.refused} POSTs failed, first: {posted.first_error}", file=sys.stderr)


async def post_burst(api_urls: Sequence[str], path: str, token: str, count: int) -> Posted:
    """``count`` tasks as fast as POST_CONCURRENCY connections allow, spread over ``api_urls``."""
    posted = Posted({})
    seqs = iter(range(count))
    urls = [f"{base}/api/{path}" for base in api_urls]

    async def loop(session: aiohttp.ClientSession) -> None:
        for seq in seqs:
            posted.note(path, await _post(session, urls[seq % len(urls)], token, seq))

    async with _poster(POST_CONCURRENCY) as session:
        await asyncio.gather(*(loop(session) for _ in range(POST_CONCURRENCY)))
    _report(posted)
    return posted


async def post_paced(
    api_url: str, paths: Sequence[str], token: str, rate: float, count: int
) -> tuple[Posted, float]:
    """Open loop: task n is sent at n / rate seconds, over ``paths`` in turn, whatever the
    answers; what came back, and the seconds it took."""
    posted = Posted({})
    routes = itertools.cycle(paths)
    began = time.perf_counter()

    async def send(session: aiohttp.ClientSession, path: str, seq: int) -> None:
        posted.note(path, await _post(session, f"{api_url}/api/{path}", token, seq))

    async with _poster(POST_CONCURRENCY) as session:
        sent = []
        for seq in range(count):
            delay = began + seq / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent.append(asyncio.create_task(send(session, next(routes), seq)))
        await asyncio.gather(*sent)
    _report(posted)
    return posted, time.perf_counter() - began


async def warm_up(api_urls: Sequence[str], sink: SinkControl, token: str, alive: Alive) -> None:
    """A first burst, not measured: connection pools, caches and the worker get going."""
    await sink.reset()
    posted = await post_burst(api_urls, "deliver", token, WARMUP_TASKS)
    await sink.wait_for("/deliver", posted.count(), alive)


async def measure_burst(
    api_urls: Sequence[str], sink: SinkControl, token: str, count: int, alive: Alive
) -> Delivered:
    """Post ``count`` tasks in a burst; time from the first 202 to the last arrival at the sink."""
    await sink.reset()
    posted = await post_burst(api_urls, "deliver", token, count)
    accepted = posted.times()
    if not accepted:
        raise RuntimeError(f"no task was accepted: {posted.first_error}")
    summary = await sink.wait_for("/deliver", len(accepted), alive, strict=False)
    first = min(accepted)
    delivered = int(summary["distinct_tasks"])
    result = Delivered(
        tasks=len(accepted),
        delivered=delivered,
        seconds=float(summary["last_at"]) - first if delivered else 0.0,
        posting_seconds=max(accepted) - first,
        duplicates=int(summary["count"]) - delivered,
        refused=posted.refused,
    )
    print(
        f"  {delivered} of {len(accepted)} tasks: {result.rate:,.0f} deliveries/s (posting took "
        f"{result.posting_seconds:.1f} s of {result.seconds:.1f} s)",
        file=sys.stderr,
    )
    return result


def measure_client(client: str, sink: SinkControl, seconds: float) -> ClientRun:
    """The bare client in a process of its own on the server core, posting to the sink."""
    argv = [sys.executable, str(CLIENT_SCRIPT), "--client", client]
    argv += ["--url", sink.url(f"limit-{client}"), "--body", body().decode()]
    argv += ["--concurrency", str(DELIVERY_CONCURRENCY), "--seconds", str(seconds)]
    done = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=pin_to(SERVER_CPUS),
    )
    if done.returncode != 0:
        raise RuntimeError(f"{client} client failed:\n{done.stderr[-3000:]}")
    tally = json.loads(done.stdout.strip().splitlines()[-1])
    result = ClientRun(client, tally["requests"], tally["errors"], tally["seconds"])
    print(f"  bare {client}: {result.rate:,.0f} requests/s", file=sys.stderr)
    if result.errors:
        raise RuntimeError(f"bare {client} saw {result.errors} failed requests")
    return result


def first_arrivals(
    arrivals: Sequence[tuple[str, float | None, float]], expected: int, seconds: float
) -> Latency:
    """Send-to-arrival of each task's first request on one path.

    A task that never arrived counts as the longest wait seen so far, so a run the system
    could not keep up with shows at least that high a tail (see ``missing``)."""
    seen: set[str] = set()
    samples: list[float] = []
    for task, sent_at, arrived_at in arrivals:
        if task in seen or sent_at is None:
            continue
        seen.add(task)
        samples.append((arrived_at - sent_at) * 1000)
    missing = max(0, expected - len(samples))
    samples += [max(samples, default=0.0)] * missing
    return Latency(sorted(samples), expected, seconds)


def _missing(summary: dict[str, Any], expected: int) -> int:
    return max(0, expected - int(summary["distinct_tasks"]))


@dataclass(frozen=True)
class Lost:
    """Tasks a paced run lost: POSTs without a 202, and accepted tasks that never arrived."""

    refused: int = 0
    undelivered: int = 0


async def measure_latency(
    api_url: str, sink: SinkControl, token: str, seconds: float, alive: Alive
) -> tuple[Latency, Lost]:
    """Tasks paced at LATENCY_RATE; from just before each POST to its arrival at the sink."""
    count = int(seconds * LATENCY_RATE)
    await sink.reset()
    posted, took = await post_paced(api_url, ["deliver"], token, LATENCY_RATE, count)
    summary = await sink.wait_for("/deliver", posted.count(), alive, strict=False)
    result = first_arrivals(await sink.arrivals("/deliver"), posted.count(), took)
    lost = Lost(posted.refused, _missing(summary, posted.count()))
    print(
        f"  POST to first attempt: p50 {result.percentile(50):.1f} ms, "
        f"p95 {result.percentile(95):.1f} ms, p99 {result.percentile(99):.1f} ms",
        file=sys.stderr,
    )
    return result, lost


async def measure_failover(
    api_url: str, sink: SinkControl, token: str, routes: Sequence[str], per_route: int, alive: Alive
) -> tuple[dict[str, Latency], Lost]:
    """Tasks paced over ``routes`` in turn; POST-to-arrival at each route's sink path."""
    await sink.reset()
    count = per_route * len(routes)
    posted, took = await post_paced(api_url, routes, token, FAILOVER_RATE, count)
    results: dict[str, Latency] = {}
    undelivered = 0
    for route in routes:
        summary = await sink.wait_for(f"/{route}", posted.count(route), alive, strict=False)
        undelivered += _missing(summary, posted.count(route))
        arrivals = await sink.arrivals(f"/{route}")
        results[route] = first_arrivals(arrivals, posted.count(route), took)
        print(f"  {route}: p50 {results[route].percentile(50):.1f} ms", file=sys.stderr)
    return results, Lost(posted.refused, undelivered)


async def measure_memory(
    server: RunningServer, sink: SinkControl, token: str, count: int
) -> Memory:
    """Peak RSS of ``server`` while the sink holds ``count`` deliveries open at once.

    The sink answers none of them until all have arrived (or IN_FLIGHT_WAIT_SECONDS passed);
    RSS is sampled all along, then the sink lets them go.
    """
    alive = alive_check(server)
    await asyncio.sleep(1.0)  # settle after the set-up requests
    idle = server.rss_mb()
    peak = idle
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.rss_mb())
            await asyncio.sleep(RSS_POLL_SECONDS)

    await sink.reset()
    sampler = asyncio.create_task(sample())
    began = time.perf_counter()
    try:
        posted = await post_burst([server.base_url], "hold", token, count)
        deadline = began + IN_FLIGHT_WAIT_SECONDS
        while (await sink.stats())["in_flight"] < posted.count() and time.perf_counter() < deadline:
            alive()
            await asyncio.sleep(STATS_POLL_SECONDS)
        built_up = time.perf_counter() - began
        await asyncio.sleep(0.5)  # a few more samples with everything held
        await sink.release()
        await sink.wait_for("/hold", posted.count(), alive)
    finally:
        done.set()
        await sampler
    stats = await sink.stats()
    result = Memory(idle, peak, int(stats["in_flight_max"]), count, posted.refused, built_up)
    print(
        f"  RSS idle {idle:.1f} MB, peak {peak:.1f} MB with up to {result.in_flight_max} "
        f"deliveries held at the sink ({built_up:.1f} s to build up)",
        file=sys.stderr,
    )
    return result
