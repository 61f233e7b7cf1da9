"""Queue benchmark: enqueue, claim+complete, enqueue-to-start latency and crash recovery.

Dispatch on SQLite and on PostgreSQL against Huey's SQLite storage (fsync on) and Procrastinate
(PostgreSQL), with no-op jobs, all in one run. Throughput workloads run in this process and
alternate between the sides for several rounds (medians reported); latency and crash recovery
use each side's real worker in a process of its own (``bench/queue_worker.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module: the repository root takes its place (runnable from anywhere).
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from bench.common import (
    Latency,
    Row,
    exit_on_sigterm,
    machine_info,
    markdown_table,
    update_docs_section,
    warn_if_busy,
    write_results,
)
from bench.queue_runs import (
    DRAIN_CONCURRENCY,
    LATENCY_CONCURRENCY,
    LATENCY_RATE,
    Recovery,
    Run,
    Throughput,
    measure_claims,
    measure_drain,
    measure_enqueue,
    measure_latency,
    measure_recovery,
)
from bench.queue_sides import SIDE_KEYS, DispatchSide, Side, make_side
from bench.serving import LOAD_CPUS

from dispatch.config import Settings
from dispatch.queue.notify import SQLITE_WATCH_SECONDS
from dispatch.telemetry.logging import configure_logging

BENCHMARK = "queue"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
PEERS = {
    "SQLite": ("dispatch-sqlite", "huey"),
    "PostgreSQL": ("dispatch-postgresql", "procrastinate"),
}
CLAIM_BATCHES = (1, 50)
ENQUEUE_BATCH = 100
CLAIM_TARGETS = {"PostgreSQL": 2_000.0, "SQLite": 5_000.0}
PEER_RATIO_TARGET = {"PostgreSQL": 5.0}
P95_TARGETS_MS = {"PostgreSQL": 50.0, "SQLite": 150.0}
DISPATCH_POLL_SECONDS = float(Settings.model_fields["worker_poll_interval_seconds"].default)
FULL = Run(seconds=3.0, rounds=3, backlog=30_000, latency_seconds=25.0, recovery_rounds=3)
QUICK = Run(seconds=1.0, rounds=1, backlog=3_000, latency_seconds=4.0, recovery_rounds=1)


@dataclass
class SideResults:
    """Everything measured for one side: throughput per workload and round, latency, recovery."""

    label: str
    durability: dict[str, str]
    throughput: dict[str, list[Throughput]] = field(default_factory=dict)
    latency: dict[str, Latency] = field(default_factory=dict)
    recovery: list[Recovery] = field(default_factory=list)

    def add(self, workload: str, result: Throughput | None) -> None:
        if result is not None:
            self.throughput.setdefault(workload, []).append(result)

    def median_rate(self, workload: str) -> float | None:
        rounds = self.throughput.get(workload)
        return statistics.median(r.rate for r in rounds) if rounds else None

    def as_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "durability": self.durability,
            "throughput": {
                name: [asdict(r) | {"rate": r.rate} for r in rounds]
                for name, rounds in self.throughput.items()
            },
            "latency": {name: lat.as_json() for name, lat in self.latency.items()},
            "recovery": [asdict(drill) for drill in self.recovery],
        }


async def throughput_round(side: Side, run: Run, results: SideResults) -> None:
    """One round of every throughput workload on one side.

    Enqueues start from an empty queue; claims and the drain from a backlog topped up to
    ``Run.backlog`` (finished jobs stay, as they would under retention).
    """
    await side.clear()
    results.add("enqueue_1", await measure_enqueue(side, run, 1))
    await side.clear()
    results.add(f"enqueue_{ENQUEUE_BATCH}", await measure_enqueue(side, run, ENQUEUE_BATCH))
    await side.clear()
    for batch in CLAIM_BATCHES:
        results.add(f"claim_{batch}", await measure_claims(side, run, batch))
    results.add("drain", await measure_drain(side, run))
    for name, rounds in results.throughput.items():
        print(f"  {side.label}: {name} {rounds[-1].rate:,.0f} jobs/s", file=sys.stderr)


async def measure_all(run: Run, workdir: Path, postgres_url: str) -> dict[str, SideResults]:
    """Open every side on fresh storage, then throughput rounds, latency, crash recovery."""
    sides = [make_side(key, workdir=workdir, postgres_url=postgres_url) for key in SIDE_KEYS]
    results: dict[str, SideResults] = {}
    try:
        for side in sides:
            await side.open(fresh=True)
            results[side.key] = SideResults(side.label, await side.durability())
        for round_no in range(1, run.rounds + 1):
            print(f"round {round_no} of {run.rounds}:", file=sys.stderr)
            for side in sides:
                await throughput_round(side, run, results[side.key])
        for side in sides:
            print(f"latency at {LATENCY_RATE} jobs/s, {side.label}:", file=sys.stderr)
            results[side.key].latency["worker_process"] = await measure_latency(
                side, run, workdir, postgres_url, embedded=False
            )
            if side.key == "dispatch-sqlite":
                results[side.key].latency["embedded"] = await measure_latency(
                    side, run, workdir, postgres_url, embedded=True
                )
        for side in sides:
            if isinstance(side, DispatchSide):
                print(f"crash recovery, {side.label}:", file=sys.stderr)
                recovered = await measure_recovery(side, run, workdir, postgres_url)
                results[side.key].recovery = recovered
    finally:
        for side in sides:
            await side.close()
    return results


def throughput_rows(storage: str, ours: SideResults, peer: SideResults) -> list[Row]:
    """Enqueue, claim+complete and worker-drain medians, Dispatch against the peer."""

    def pair(name: str, workload: str, peer_workload: str | None = None) -> Row:
        base = peer.median_rate(peer_workload or workload)
        return Row(name, ours.median_rate(workload) or 0.0, base, decimals=0)

    batched = ours.median_rate(f"claim_{CLAIM_BATCHES[-1]}") or 0.0
    peer_rates = [peer.median_rate(w) for w in ("claim_1", f"claim_{CLAIM_BATCHES[-1]}", "drain")]
    peer_best = max(rate for rate in peer_rates if rate is not None)
    ratio_target = PEER_RATIO_TARGET.get(storage)
    return [
        pair("Enqueue, 1 job per transaction (jobs/s)", "enqueue_1"),
        pair(f"Enqueue, {ENQUEUE_BATCH} jobs per transaction (jobs/s)", f"enqueue_{ENQUEUE_BATCH}"),
        pair("Claim+complete, batch 1 (jobs/s)", "claim_1"),
        Row(
            f"Claim+complete, batch {CLAIM_BATCHES[-1]} (jobs/s)",
            batched,
            peer.median_rate(f"claim_{CLAIM_BATCHES[-1]}"),
            decimals=0,
            target=f">= {CLAIM_TARGETS[storage]:,.0f} jobs/s",
            met=batched >= CLAIM_TARGETS[storage],
        ),
        Row(
            f"Claim+complete: batch {CLAIM_BATCHES[-1]} vs the peer's best mode (jobs/s)",
            batched,
            peer_best,
            decimals=0,
            target=f"ratio >= {ratio_target:g}" if ratio_target else "",
            met=batched / peer_best >= ratio_target if ratio_target else None,
        ),
        pair(f"Real worker draining a backlog, concurrency {DRAIN_CONCURRENCY} (jobs/s)", "drain"),
    ]


def latency_rows(storage: str, ours: SideResults, peer: SideResults) -> list[Row]:
    """Enqueue-to-start percentiles with the worker in another process (and, SQLite, embedded)."""
    mine, theirs = ours.latency["worker_process"], peer.latency["worker_process"]
    target = P95_TARGETS_MS[storage]
    rows = [
        Row(
            "Enqueue-to-start p50, worker process (ms)", mine.percentile(50), theirs.percentile(50)
        ),
        Row(
            "Enqueue-to-start p95, worker process (ms)",
            mine.percentile(95),
            theirs.percentile(95),
            target=f"<= {target:g} ms",
            met=mine.percentile(95) <= target,
        ),
        Row(
            "Enqueue-to-start p99, worker process (ms)", mine.percentile(99), theirs.percentile(99)
        ),
    ]
    embedded = ours.latency.get("embedded")
    if embedded is not None:
        for p in (50, 95, 99):
            name = f"Enqueue-to-start p{p}, worker in the enqueuing process (ms)"
            rows.append(Row(name, embedded.percentile(p)))
    return rows


def recovery_rows(ours: SideResults, run: Run) -> list[Row]:
    """Worst of the crash drills: until the lease was reaped (the target), and the restart."""
    if not ours.recovery:
        return []
    bound = run.recovery_lease + run.recovery_upkeep
    reaped = max(drill.reaped for drill in ours.recovery)
    restarted = max(drill.restarted for drill in ours.recovery)
    drills = len(ours.recovery)
    return [
        Row(
            f"Crash recovery: kill -9 mid-job to lease reaped, worst of {drills} (s)",
            reaped,
            target=f"<= lease + upkeep = {bound:g} s",
            met=reaped <= bound,
        ),
        Row(
            f"Crash recovery: kill -9 mid-job to restart elsewhere, worst of {drills} (s)",
            restarted,
        ),
    ]


def summarise(results: dict[str, SideResults], run: Run) -> dict[str, list[Row]]:
    tables: dict[str, list[Row]] = {}
    for storage, (our_key, peer_key) in PEERS.items():
        ours, peer = results[our_key], results[peer_key]
        tables[storage] = [
            *throughput_rows(storage, ours, peer),
            *latency_rows(storage, ours, peer),
            *recovery_rows(ours, run),
        ]
    return tables


def render_table(storage: str, rows: Sequence[Row], peer_label: str) -> str:
    header = ["Metric", f"Dispatch ({storage})", peer_label, "ratio", "target", "met?"]
    return markdown_table(header, [row.cells() for row in rows])


def render_settings(results: dict[str, SideResults]) -> str:
    lines = []
    for side in results.values():
        shown = ", ".join(f"{name}={value}" for name, value in side.durability.items())
        lines.append(f"- {side.label}: {shown}")
    return "\n".join(lines)


def render_section(
    tables: dict[str, list[Row]],
    results: dict[str, SideResults],
    run: Run,
    machine: dict[str, object],
    postgres_url: str,
) -> str:
    """The docs section: how each side was measured, both tables, the machine."""
    peers = {storage: results[peer].label for storage, (_, peer) in PEERS.items()}
    return SECTION.format(
        postgres_url=postgres_url,
        rounds=run.rounds,
        seconds=f"{run.seconds:g}",
        backlog=f"{run.backlog:,}",
        batch=CLAIM_BATCHES[-1],
        enqueue_batch=ENQUEUE_BATCH,
        drain=DRAIN_CONCURRENCY,
        rate=LATENCY_RATE,
        latency_seconds=f"{run.latency_seconds:g}",
        concurrency=LATENCY_CONCURRENCY,
        poll=f"{DISPATCH_POLL_SECONDS:g}",
        watch=f"{SQLITE_WATCH_SECONDS:g}",
        recovery_rounds=run.recovery_rounds,
        lease=f"{run.recovery_lease:g}",
        upkeep=f"{run.recovery_upkeep:g}",
        postgres_table=render_table("PostgreSQL", tables["PostgreSQL"], peers["PostgreSQL"]),
        sqlite_table=render_table("SQLite", tables["SQLite"], peers["SQLite"]),
        settings=render_settings(results),
        date=machine["date"],
        cores=machine["cpu_count"],
        cpu=machine["cpu_model"],
        python=machine["python"],
        load=machine["load_average_1m"],
        mode="`--quick`, figures for smoke only" if run == QUICK else "full run",
    )


SECTION = """## Queue: enqueue, claim+complete, enqueue-to-start latency, crash recovery

`bench/queue.py` measures no-op jobs on Dispatch's queue on SQLite and on PostgreSQL and, in the
same run, the same workloads on Huey's SQLite storage (`SqliteHuey(fsync=True)`) and on
Procrastinate (PostgreSQL). Reproduce with `.venv/bin/python bench/queue.py` (or `make bench`,
which runs every benchmark); `--quick` is a short smoke run. It needs PostgreSQL at
`--postgres-url`, by default
`{postgres_url}`:
Dispatch gets a schema `bench_queue` there and Procrastinate a database `bench_procrastinate`,
both dropped and recreated by every run.

How each workload is measured:

- **Throughput** workloads run in the benchmark's process (pinned to core 1; PostgreSQL is not
  pinned), each time-boxed at {seconds} s, alternating between the four sides for
  {rounds} round(s); tables show medians. Enqueue workloads start from an empty queue, claim
  and drain workloads with {backlog} jobs waiting.
- **Enqueue, 1 per transaction**: Dispatch `service.enqueue` in its own `database.session()`;
  Procrastinate `task.defer_async()`; Huey calls the task (`huey.enqueue`: one
  `BEGIN EXCLUSIVE` … `COMMIT`). **{enqueue_batch} per transaction**: Dispatch
  `service.enqueue_many`, Procrastinate `batch_defer_async`; Huey has no batch enqueue (—).
- **Claim+complete**, one loop, no handler: Dispatch `service.claim(limit=N)` then
  `service.complete` (batch 1) or `service.complete_many` (batch {batch}), a transaction each,
  every job leased with a fencing token and an attempt row. Procrastinate
  `job_manager.fetch_job` + `finish_job(SUCCEEDED)`, one job per fetch (it has no batch fetch:
  —). Huey `huey.dequeue()` (deletes the task in a `BEGIN EXCLUSIVE` transaction: no lease,
  at most once) + `huey.execute(task)` (runs the no-op; a `None` result is not stored). The
  "peer's best mode" row sets Dispatch's batch {batch} against the fastest of the peer's
  claim+complete and worker-drain figures.
- **Real worker draining a backlog**, in the benchmark's process, concurrency {drain}: Dispatch's
  `Worker` (claims up to its free slots, group-commits completions), Procrastinate's
  `run_worker_async(concurrency={drain})`, Huey's `Consumer` with {drain} worker threads. Rate
  is starts per second between the first and the last start. Procrastinate's worker fetches
  one job per query in a single loop whatever its concurrency, so more concurrency does not
  raise its rate.
- **Enqueue-to-start latency**: the benchmark enqueues one job per transaction, paced at
  {rate} jobs/s for {latency_seconds} s, stamping each job's arguments with the wall-clock time
  just before the enqueue call (so the figure includes the enqueue's own commit). Each side's
  real worker runs in another process (`bench/queue_worker.py`, pinned to core 0, concurrency
  {concurrency}); its handler writes down when it started. Wake-ups: Dispatch on PostgreSQL by
  LISTEN/NOTIFY (the NOTIFY is sent in the enqueue's transaction); Dispatch on SQLite, across
  processes, by reading `PRAGMA data_version` every {watch} s (another connection's commit
  changes it) and then the fetch index, with the {poll} s poll (`WORKER_POLL_INTERVAL_SECONDS`
  default) as a backstop; Procrastinate by LISTEN/NOTIFY with its default 5 s polling
  backstop; Huey's consumer by polling, every 0.1 s while jobs keep coming and backing off by
  a factor of 1.15 up to 10 s while the queue is empty (its defaults). The "worker in the
  enqueuing process" rows are Dispatch's embedded deployment (`dispatch serve` runs the worker
  in the API process), where a commit wakes the worker directly.
- **Crash recovery** (Dispatch only): two worker processes with `JOB_LEASE_SECONDS={lease}` and
  `QUEUE_UPKEEP_INTERVAL_SECONDS={upkeep}`; a job whose first attempt never ends is enqueued, the
  worker running it gets `kill -9`; the figures are the time from the kill until the reaper
  took the lease back (read off the closed attempt; the target) and until the job's second
  attempt started in the other worker ({recovery_rounds} drill(s)). Procrastinate has no
  automatic equivalent (the application retries stalled jobs itself, e.g. a periodic task
  calling `get_stalled_jobs`), and Huey deletes a task when it dequeues it, so a killed
  consumer loses it.

Ratios are Dispatch / peer: above 1 is better for throughput, below 1 is better for latency.

### PostgreSQL: Dispatch and Procrastinate

{postgres_table}

### SQLite: Dispatch and Huey

{sqlite_table}

Durability settings, read from each side's own connection during the run:

{settings}

Dispatch's SQLite runs in WAL mode with `synchronous=NORMAL`: a commit appends to the WAL
without an fsync (the WAL is synced at checkpoints), so a power cut can lose the last commits
but never corrupts the database. Huey's `fsync=True` sets `synchronous=FULL` on its WAL-mode
connection, so each of its commits also fsyncs the WAL. Both PostgreSQL sides use the same
server and settings; Procrastinate's connection pool has the size of Dispatch's (10).

Last run {date} ({mode}):
{cores} cores ({cpu}), Python {python}, load average {load} before the run.
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="One short round of everything, for development"
    )
    parser.add_argument(
        "--postgres-url", default=DEFAULT_POSTGRES_URL, help="A database on the PostgreSQL server"
    )
    return parser.parse_args(argv)


def isolate_settings() -> None:
    """Dispatch's settings here come from code, never from the developer's environment."""
    for name in Settings.model_fields:
        os.environ.pop(name.upper(), None)


def check_postgres(url: str) -> None:
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        raise SystemExit(f"{BENCHMARK}: cannot reach PostgreSQL at {url}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    isolate_settings()
    configure_logging("WARNING", "console")
    check_postgres(args.postgres_url)
    warn_if_busy()
    machine = machine_info()  # before the run, so the load average is other processes'
    if LOAD_CPUS and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, LOAD_CPUS)  # workers in other processes get SERVER_CPUS
    run = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="dispatch-bench-queue-") as tmp:
        results = asyncio.run(measure_all(run, Path(tmp), args.postgres_url))
    tables = summarise(results, run)
    payload = {
        "benchmark": BENCHMARK,
        "machine": machine,
        "settings": asdict(run)
        | {
            "quick": args.quick,
            "enqueue_batch": ENQUEUE_BATCH,
            "claim_batches": list(CLAIM_BATCHES),
            "drain_concurrency": DRAIN_CONCURRENCY,
            "latency_rate": LATENCY_RATE,
            "latency_concurrency": LATENCY_CONCURRENCY,
            "dispatch_poll_interval_seconds": DISPATCH_POLL_SECONDS,
            "dispatch_sqlite_watch_seconds": SQLITE_WATCH_SECONDS,
        },
        "sides": {key: side.as_json() for key, side in results.items()},
        "summary": {storage: [row.as_json() for row in rows] for storage, rows in tables.items()},
        "all_targets_met": all(
            row.met for rows in tables.values() for row in rows if row.met is not None
        ),
    }
    write_results(BENCHMARK, payload)
    update_docs_section(BENCHMARK, render_section(tables, results, run, machine, args.postgres_url))
    for storage, rows in tables.items():
        print(f"\n{storage}\n" + render_table(storage, rows, results[PEERS[storage][1]].label))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
