"""What bench/gateway.py measured, and how it is judged and written down.

The run's sizes (``Run``), everything measured on one database kind (``StorageResults``), the
issue's targets, the table rows built from them, and the docs section explaining each workload.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from bench.common import Latency, Row, markdown_table
from bench.gateway_deploy import StorageKind
from bench.gateway_runs import (
    DELIVERY_CONCURRENCY,
    FAILOVER_RATE,
    IN_FLIGHT_WAIT_SECONDS,
    INGEST_CONCURRENCY,
    LATENCY_RATE,
    POST_CONCURRENCY,
    WRK_TIMEOUT_SECONDS,
    ClientRun,
    Delivered,
    Lost,
    Memory,
    body,
)
from bench.loadgen import THREADS, LoadResult
from bench.serving import LOAD_CPUS, SERVER_CPUS

IN_FLIGHT = 500  # deliveries held open at once in the memory run
# aiohttp's per-host connection cap is MAX_CONNECTIONS x 10 (100 by default): raised so the
# memory run's 500 deliveries are really open at the sink, not queued inside the client.
MEMORY_MAX_CONNECTIONS = IN_FLIGHT // 10
SCALE_OUT_PROCESSES = 2
FAILOVER_ROUTES = ("deliver", "after-refused", "after-500")
INGEST_TARGET_RPS = 1_000.0
INGEST_P99_TARGET_MS = 50.0
DELIVERY_TARGET = 500.0
FIRST_ATTEMPT_P99_TARGET_MS = 250.0
RSS_TARGET_MB = 200.0


@dataclass(frozen=True)
class Run:
    """How long and how often: the full run's and ``--quick``'s values differ."""

    ingest_seconds: int  # each wrk run, after a one-second warm-up
    ingest_rounds: int
    burst_tasks: int
    burst_rounds: int
    client_seconds: float  # each bare-client run, after a one-second warm-up
    latency_seconds: float
    failover_per_route: int


@dataclass
class StorageResults:
    """Everything measured on one database kind."""

    kind: StorageKind
    ingest: dict[str, dict[int, list[LoadResult]]] = field(default_factory=dict)
    bursts: list[Delivered] = field(default_factory=list)
    clients: dict[str, list[ClientRun]] = field(default_factory=dict)
    latency: Latency | None = None
    failover: dict[str, Latency] = field(default_factory=dict)
    memory: Memory | None = None
    scale_out: list[Delivered] = field(default_factory=list)
    lost: dict[str, Lost] = field(default_factory=dict)  # per paced workload

    def add_ingest(self, side: str, connections: int, result: LoadResult) -> None:
        self.ingest.setdefault(side, {}).setdefault(connections, []).append(result)

    def as_json(self) -> dict[str, object]:
        return {
            "ingest": {
                side: {str(c): [r.as_json() for r in rounds] for c, rounds in by_c.items()}
                for side, by_c in self.ingest.items()
            },
            "bursts": [burst.as_json() for burst in self.bursts],
            "bare_clients": {
                name: [run.as_json() for run in runs] for name, runs in self.clients.items()
            },
            "post_to_first_attempt": self.latency.as_json() if self.latency else None,
            "failover": {route: lat.as_json() for route, lat in self.failover.items()},
            "memory": self.memory.as_json() if self.memory else None,
            "scale_out": [burst.as_json() for burst in self.scale_out],
            "lost": {name: asdict(lost) for name, lost in self.lost.items()},
        }

    def failed_posts(self) -> int:
        """POSTs of the delivery workloads answered with anything but 202."""
        bursts = sum(burst.refused for burst in [*self.bursts, *self.scale_out])
        memory = self.memory.refused if self.memory else 0
        return bursts + memory + sum(lost.refused for lost in self.lost.values())

    def undelivered(self) -> int:
        """Accepted tasks of the delivery workloads that had not arrived when the run gave up."""
        bursts = sum(burst.undelivered for burst in [*self.bursts, *self.scale_out])
        return bursts + sum(lost.undelivered for lost in self.lost.values())


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ingest_rows(found: StorageResults, rounds: int) -> list[Row]:
    rows: list[Row] = []
    for connections in INGEST_CONCURRENCY:
        ours, bare = found.ingest["dispatch"][connections], found.ingest["bare"][connections]
        judged = connections == INGEST_CONCURRENCY[0]
        rps = _median([r.successes_per_second for r in ours])
        p99 = _median([r.p99_ms for r in ours])
        name = f"Ingest, {connections} connections"
        rows += [
            Row(
                f"{name}: 2xx throughput, median of {rounds} (req/s)",
                rps,
                _median([r.successes_per_second for r in bare]),
                decimals=0,
                target=f">= {INGEST_TARGET_RPS:,.0f} req/s" if judged else "",
                met=rps >= INGEST_TARGET_RPS if judged else None,
            ),
            Row(
                f"{name}: p50 latency (ms)",
                _median([r.p50_ms for r in ours]),
                _median([r.p50_ms for r in bare]),
            ),
            Row(
                f"{name}: p99 latency (ms)",
                p99,
                _median([r.p99_ms for r in bare]),
                target=f"<= {INGEST_P99_TARGET_MS:g} ms" if judged else "",
                met=p99 <= INGEST_P99_TARGET_MS if judged else None,
            ),
            Row(
                f"{name}: failed requests (non-2xx, timeouts), all runs",
                sum(r.non_2xx + r.socket_errors for r in ours),
                sum(r.non_2xx + r.socket_errors for r in bare),
                decimals=0,
            ),
        ]
    return rows


def delivery_rows(found: StorageResults, run: Run) -> list[Row]:
    bare = {name: _median([c.rate for c in runs]) for name, runs in found.clients.items()}
    rate = _median([b.rate for b in found.bursts])
    rows = [
        Row(
            f"End to end, embedded worker, {run.burst_tasks:,} tasks (deliveries/s) "
            "vs bare aiohttp",
            rate,
            bare["aiohttp"],
            decimals=0,
            target=f">= {DELIVERY_TARGET:,.0f}/s",
            met=rate >= DELIVERY_TARGET,
        )
    ]
    if found.scale_out:
        scaled = _median([b.rate for b in found.scale_out])
        rows.append(
            Row(
                f"End to end, {SCALE_OUT_PROCESSES} API + {SCALE_OUT_PROCESSES} worker processes "
                "(deliveries/s) vs bare aiohttp",
                scaled,
                bare["aiohttp"],
                decimals=0,
                target=f">= {DELIVERY_TARGET:,.0f}/s",
                met=scaled >= DELIVERY_TARGET,
            )
        )
    rows.append(
        Row(
            f"Bare client, {DELIVERY_CONCURRENCY} concurrent POSTs (req/s): aiohttp vs httpx",
            bare["aiohttp"],
            bare["httpx"],
            decimals=0,
        )
    )
    rows += [
        Row(
            "Delivery runs: POSTs answered with anything but 202", found.failed_posts(), decimals=0
        ),
        Row("Delivery runs: accepted tasks not delivered in time", found.undelivered(), decimals=0),
    ]
    return rows


def latency_rows(found: StorageResults) -> list[Row]:
    if found.latency is None:
        return []
    rows = []
    for p in (50, 95, 99):
        value = found.latency.percentile(p)
        judged = p == 99
        rows.append(
            Row(
                f"POST to first delivery attempt, p{p} (ms)",
                value,
                target=f"<= {FIRST_ATTEMPT_P99_TARGET_MS:g} ms" if judged else "",
                met=value <= FIRST_ATTEMPT_P99_TARGET_MS if judged else None,
            )
        )
    return rows


def failover_rows(found: StorageResults) -> list[Row]:
    if not found.failover:
        return []
    direct = found.failover["deliver"].percentile(50)
    rows = []
    for route, what in (("after-refused", "refuses connections"), ("after-500", "answers 500")):
        via = found.failover[route].percentile(50)
        rows += [
            Row(f"Delivery p50 when the first resource {what} vs sink only (ms)", via, direct),
            Row(f"Latency a failover adds, first resource {what}, p50 (ms)", via - direct),
        ]
    return rows


def memory_rows(found: StorageResults) -> list[Row]:
    memory = found.memory
    if memory is None:
        return []
    return [
        Row(
            f"Peak RSS, {memory.in_flight_max} deliveries in flight, vs idle (MB)",
            memory.peak_mb,
            memory.idle_mb,
            decimals=1,
            target=f"<= {RSS_TARGET_MB:g} MB at {IN_FLIGHT} in flight",
            met=memory.peak_mb <= RSS_TARGET_MB and memory.in_flight_max >= IN_FLIGHT,
        )
    ]


def summarise(results: dict[StorageKind, StorageResults], run: Run) -> dict[StorageKind, list[Row]]:
    return {
        kind: [
            *ingest_rows(found, run.ingest_rounds),
            *delivery_rows(found, run),
            *latency_rows(found),
            *failover_rows(found),
            *memory_rows(found),
        ]
        for kind, found in results.items()
    }


def render_table(kind: StorageKind, rows: Sequence[Row]) -> str:
    header = ["Metric", f"Dispatch ({kind})", "limit / baseline", "ratio", "target", "met?"]
    return markdown_table(header, [row.cells() for row in rows])


SECTION = """## Gateway: durable ingest, delivery, latency, failover and memory

`bench/gateway.py` measures the gateway on SQLite and on PostgreSQL in one run. Reproduce with
`.venv/bin/python bench/gateway.py` (or `make bench`); `--quick` is a short smoke run. It needs
PostgreSQL at `--postgres-url`, by default `{postgres_url}`, where each phase gets a fresh
schema `bench_gateway_<phase>` (dropped again at the end); on SQLite each phase gets a fresh
file. Dispatch is configured only through its environment (`LOG_LEVEL=WARNING`, rate limits
too high to refuse anything, breakers that never open, `GATEWAY_ALLOWED_NETWORKS=127.0.0.0/8`)
and its admin API. The payload is a {payload_bytes}-byte JSON object, passed through unmapped.

How each workload is measured:

- **Cores.** Everything under test (`dispatch serve`, the bare apps and bare clients) is pinned
  to core {server_cpus}, except the scale-out row's four processes (see below); wrk, the
  benchmark's own poster and the sink are pinned to core {load_cpus}; PostgreSQL is not pinned.
- **Ingest**: `wrk -t{threads} -c8` and `-c64` POST the payload with `X-API-Token` to
  `/api/ingest` on one `dispatch serve` with `WORKER_ENABLED=false` (so only ingest runs), each
  run {ingest_seconds} s after a 1 s warm-up, alternating with the limit for {ingest_rounds}
  round(s); medians. Every 202 means the task row and its delivery job were committed. The
  limit, `bench/bare_ingest.py`, is plain FastAPI on the same uvicorn options whose route
  compares the token with one string, parses the body and INSERTs it into a table with a JSON
  column in its own transaction before answering 202 (SQLite: stock aiosqlite, WAL,
  `synchronous=NORMAL`, as Dispatch; PostgreSQL: asyncpg, same pool size).
- **End to end**: `dispatch serve` with the embedded worker (`WORKER_CONCURRENCY={concurrency}`)
  delivering with its aiohttp client to the sink (`bench/gateway_sink.py`, aiohttp on uvloop,
  answering 200 at once). The benchmark posts {burst_tasks} tasks over {post_concurrency}
  connections as fast as they are accepted; the figure is delivered tasks / (last arrival at
  the sink - first 202), so it includes ingest and delivery sharing one process and one core.
  The limit,
  alternating with it each round ({burst_rounds} round(s), medians), is `bench/gateway_client.py`:
  a bare aiohttp client (on uvloop, as `dispatch serve`) posting the same payload to the same
  sink over {concurrency} concurrent requests for {client_seconds} s, with httpx beside it:
  the httpx/aiohttp row is how the delivery client was chosen. On PostgreSQL the same bursts
  go, split evenly, to two `dispatch serve` with `WORKER_ENABLED=false`, delivered by two
  `dispatch worker` processes (`WORKER_CONCURRENCY={concurrency}` each). These four are not
  pinned: they may use both cores, which they share with PostgreSQL, the sink and the poster
  (pinned to one core, four processes would only take turns on it).
- **POST to first delivery attempt**: {latency_rate} tasks/s for {latency_seconds} s, open loop
  (each POST leaves on schedule whatever the answers), each body stamped with the wall-clock
  time just before its POST; the sink notes when the request arrives. The figure includes the
  ingest request itself, so it is an upper bound on accepted-to-first-attempt.
- **Failover**: {failover_rate} tasks/s, open loop, in turn to an endpoint with the sink only,
  one whose first resource is a closed loopback port (connection refused) and one whose first
  resource answers 500, each followed by the sink; {failover_per_route} tasks each; the figure
  is the POST-to-arrival p50 at the sink, and what it adds to the sink-only p50. Breakers are
  set never to open, so every task tries the failing resource first (with the default breaker
  settings the resource would be skipped after 5 failures in a row).
- **Memory**: `dispatch serve` with `WORKER_CONCURRENCY={in_flight}` and
  `MAX_CONNECTIONS={max_connections}` (the delivery client allows 10 x `MAX_CONNECTIONS`
  connections per host, so 100 by default), {in_flight} tasks posted in a burst to a sink path
  that answers nothing until all of them are held open (at most {hold_wait:g} s), then releases
  them; RSS of the process is sampled every 20 ms throughout. The row names the most requests
  the sink held at once; the second column is the idle RSS before the burst.
- **Failed requests** are counted, never fatal: wrk waits up to {wrk_timeout} s for an answer
  (a request slower than that is a timeout, left out of the latencies), and the throughput rows
  count 2xx answers only. The delivery runs count only tasks whose POST got its 202, and wait
  20 s + 1 s per 50 tasks for them to arrive; a task still missing then is counted as not
  delivered in time and, in the latency runs, as the longest wait seen (so the tail is a lower
  bound).

### SQLite

{sqlite_table}

### PostgreSQL

{postgres_table}

Ratios are Dispatch / limit (or / baseline): above 1 is better for throughput, below 1 is
better for latency and memory.

Last run {date} ({mode}):
{cores} cores ({cpu}), Python {python}, load average {load} before the run.
"""


def render_section(
    tables: dict[StorageKind, list[Row]],
    run: Run,
    machine: dict[str, object],
    postgres_url: str,
    *,
    quick: bool,
) -> str:
    """The docs section: how each workload was measured, both tables, the machine."""
    return SECTION.format(
        postgres_url=postgres_url,
        payload_bytes=len(body()),
        server_cpus=",".join(map(str, sorted(SERVER_CPUS))) or "any",
        load_cpus=",".join(map(str, sorted(LOAD_CPUS))) or "any",
        threads=THREADS,
        ingest_seconds=run.ingest_seconds,
        ingest_rounds=run.ingest_rounds,
        concurrency=DELIVERY_CONCURRENCY,
        burst_tasks=f"{run.burst_tasks:,}",
        post_concurrency=POST_CONCURRENCY,
        burst_rounds=run.burst_rounds,
        client_seconds=f"{run.client_seconds:g}",
        latency_rate=LATENCY_RATE,
        latency_seconds=f"{run.latency_seconds:g}",
        failover_rate=FAILOVER_RATE,
        failover_per_route=run.failover_per_route,
        in_flight=IN_FLIGHT,
        max_connections=MEMORY_MAX_CONNECTIONS,
        hold_wait=IN_FLIGHT_WAIT_SECONDS,
        wrk_timeout=WRK_TIMEOUT_SECONDS,
        sqlite_table=render_table("SQLite", tables["SQLite"]),
        postgres_table=render_table("PostgreSQL", tables["PostgreSQL"]),
        date=machine["date"],
        cores=machine["cpu_count"],
        cpu=machine["cpu_model"],
        python=machine["python"],
        load=machine["load_average_1m"],
        mode="`--quick`, figures for smoke only" if quick else "full run",
    )
