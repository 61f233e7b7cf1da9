"""The watch benchmark's live-stream workload: a change written here, its message read there.

A real ``dispatch serve`` runs (with the embedded worker, or without it beside a separate
``dispatch worker``); one server-sent-events connection is held open with the admin key,
which receives every user's notifications. The benchmark's process writes single listings
at a steady rate through the catalogue's writer, each one matching the probe rule (and
whatever else it matches), and stamps ``time.perf_counter()`` just before each commit. A
thread reads the stream and stamps each message's arrival by its ``listing_id``; the
latency is the first arrival for a listing minus its stamp (one process, one clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from bench.common import Latency
from bench.gateway_deploy import (
    ADMIN,
    dispatch_env,
    dispatch_workers,
    serve_spec,
    wait_announced,
)
from bench.serving import RunningServer, running
from bench.watch_evaluate import write_one

from dispatch.db.engine import Database

STREAM_PATH = "/api/v1/stream/events"
CONNECT_TIMEOUT_SECONDS = 10.0
WARM_UP_ARRIVALS = 3  # consecutive writes that must arrive before the measured run
WARM_UP_WAIT_SECONDS = 3.0
WARM_UP_LIMIT_SECONDS = 60.0
GRACE_SECONDS = 5.0  # after the last write, how long a message may still arrive
KEEPALIVE_SECONDS = "1"  # the reader thread looks at its stop flag at least this often
FIRST_NUMBER = 1_000_000  # listing numbers above those of the evaluation workload
# Nothing the benchmark does may be refused by a rate limit.
UNLIMITED = {
    "REQUEST_RATE_PER_MINUTE": "100000000",
    "STREAM_RATE_PER_MINUTE": "100000",
    "WATCH_RATE_PER_MINUTE": "100000",
    "WATCH_STREAM_KEEPALIVE_SECONDS": KEEPALIVE_SECONDS,
    # The rules are never due (next_run_at is unset); should one poll, no real provider
    # is reached: every base URL is a closed loopback port.
    **{
        f"{name}_BASE_URL": "http://127.0.0.1:9"
        for name in ("COMPLEXSHOP", "UNIVERSALSTORE", "GOAT", "DISCOGS", "EBAY")
    },
}


@dataclass(frozen=True)
class Deployment:
    """How the message travels from the evaluator to the stream."""

    name: str
    separate_worker: bool
    redis_url: str | None = None

    def describe(self) -> str:
        if not self.separate_worker:
            return "embedded worker"
        via = "Redis" if self.redis_url else "LISTEN/NOTIFY"
        return f"separate worker, {via}"


class StreamReader(threading.Thread):
    """Reads the stream in a thread of its own, so the writes never delay a stamp."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        super().__init__(name="sse-reader", daemon=True)
        self.url = url
        self.headers = dict(headers)
        self.arrivals: dict[int, float] = {}  # listing id -> first arrival (perf_counter)
        self.messages = 0
        self.error: BaseException | None = None
        self.connected = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        timeout = httpx.Timeout(CONNECT_TIMEOUT_SECONDS, read=None)
        try:
            with (
                httpx.Client(timeout=timeout) as client,
                client.stream("GET", self.url, headers=self.headers) as response,
            ):
                response.raise_for_status()
                for line in response.iter_lines():
                    if self.stopping.is_set():
                        return
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("data: "):
                        self._record(line[len("data: ") :])
        except BaseException as exc:  # reported by the benchmark's thread
            if not self.stopping.is_set():
                self.error = exc

    def _record(self, data: str) -> None:
        arrived = time.perf_counter()
        message = json.loads(data)
        self.messages += 1
        self.arrivals.setdefault(int(message["listing_id"]), arrived)

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the stream reader failed: {self.error!r}") from self.error
        if not self.is_alive():
            raise RuntimeError("the stream reader stopped")


@contextlib.contextmanager
def reading(server: RunningServer) -> Iterator[StreamReader]:
    reader = StreamReader(server.base_url + STREAM_PATH, ADMIN)
    reader.start()
    try:
        if not reader.connected.wait(CONNECT_TIMEOUT_SECONDS):
            reader.check()
            raise RuntimeError("the stream did not connect")
        yield reader
    finally:
        reader.stopping.set()
        reader.join(timeout=float(KEEPALIVE_SECONDS) + 2)


async def _arrived(reader: StreamReader, product_id: int, wait: float) -> bool:
    deadline = time.perf_counter() + wait
    while time.perf_counter() < deadline:
        if product_id in reader.arrivals:
            return True
        reader.check()
        await asyncio.sleep(0.01)
    return product_id in reader.arrivals


async def warm_up(database: Database, reader: StreamReader, numbers: Iterator[int]) -> int:
    """Write until WARM_UP_ARRIVALS writes in a row arrive (rules compiled, relay listening)."""
    deadline = time.perf_counter() + WARM_UP_LIMIT_SECONDS
    in_a_row = writes = 0
    while in_a_row < WARM_UP_ARRIVALS:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no stream message after {WARM_UP_LIMIT_SECONDS:.0f} s of writes")
        product_id, _ = await write_one(database, next(numbers))
        writes += 1
        in_a_row = in_a_row + 1 if await _arrived(reader, product_id, WARM_UP_WAIT_SECONDS) else 0
    return writes


async def paced_writes(
    database: Database, reader: StreamReader, numbers: Iterator[int], rate: float, seconds: float
) -> tuple[Latency, int]:
    """One listing every 1/rate s for ``seconds``; latencies (ms) and how many never arrived."""
    stamps: dict[int, float] = {}
    count = round(rate * seconds)
    start = time.perf_counter()
    for n in range(count):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        product_id, stamp = await write_one(database, next(numbers))
        stamps[product_id] = stamp
    produced = time.perf_counter() - start
    deadline = time.perf_counter() + GRACE_SECONDS
    while time.perf_counter() < deadline and not stamps.keys() <= reader.arrivals.keys():
        reader.check()
        await asyncio.sleep(0.05)
    samples = [
        (reader.arrivals[pid] - stamp) * 1000
        for pid, stamp in stamps.items()
        if pid in reader.arrivals
    ]
    return Latency(samples, count, produced), count - len(samples)


async def measure(
    deployment: Deployment,
    storage: Mapping[str, str],
    workdir: Path,
    database: Database,
    postgres_url: str,
    rate: float,
    seconds: float,
    report: Callable[[str], None],
) -> dict[str, Any]:
    """Start Dispatch as ``deployment`` says, warm it up, then the paced run; its figures."""
    extra = dict(UNLIMITED)
    if deployment.redis_url:
        extra |= {"REDIS_URL": deployment.redis_url, "REDIS_KEY_PREFIX": "bench_watch"}
    api_env = dispatch_env(
        storage, WORKER_ENABLED="false" if deployment.separate_worker else "true", **extra
    )
    numbers = iter(range(FIRST_NUMBER, FIRST_NUMBER * 2))
    log_name = f"serve-{deployment.name}.log"
    with contextlib.ExitStack() as stack:
        if deployment.separate_worker:
            workers = stack.enter_context(
                dispatch_workers(workdir, dispatch_env(storage, **extra), 1)
            )
            schema = storage["DATABASE_SCHEMA"]
            wait_announced(workers, workdir, schema, postgres_url)
        server = stack.enter_context(running(serve_spec(workdir, log_name, api_env)))
        reader = stack.enter_context(reading(server))
        warm = await warm_up(database, reader, numbers)
        report(f" {deployment.describe()}: {rate:g} writes/s for {seconds:g} s")
        latency, lost = await paced_writes(database, reader, numbers, rate, seconds)
        rss = {"serve_rss_mb": server.rss_mb()}
        if deployment.separate_worker:
            rss["worker_rss_mb"] = psutil.Process(workers[0].pid).memory_info().rss / 1_000_000
        messages = reader.messages
    if not latency.samples_ms:
        raise RuntimeError(f"{deployment.name}: no message arrived")
    figures = latency.as_json()
    figures["writes"], figures["write_rate"] = figures.pop("jobs"), figures.pop("enqueue_rate")
    return {
        "deployment": deployment.describe(),
        "rate": rate,
        "seconds": seconds,
        "warm_up_writes": warm,
        "lost": lost,
        "messages": messages,
        **rss,
        **figures,
    }
