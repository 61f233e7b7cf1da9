"""Soak benchmark: `dispatch serve` under steady, moderate load for 10 minutes; is it flat?

`dispatch serve` (API, UI and the embedded worker) runs as an operator starts it, on the
embedded SQLite default or on PostgreSQL, while four workloads run at once at fixed rates
(bench/soak_load.py): gateway ingest and deliveries to a local sink, catalogue syncs of the
stand-in providers, server-sent-events clients on the live stream, and new listings that
make events flow. Every few seconds the server's process tree is sampled (RSS, open files,
threads, database connections) with the window's request rate and latencies; after a
warm-up the early and late samples are compared (bench/soak_report.py). Nothing is asserted
about flatness: the run fails only when the load itself does (the server exits, a request
fails, a task is not delivered, a stream misses a listing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module: the repository root takes its place (runnable from anywhere).
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from bench import common
from bench.gateway_deploy import dispatch_env, dispatch_executable, serve_spec, sink_spec
from bench.gateway_runs import SinkControl
from bench.serving import LOAD_CPUS, SERVER_CPUS, RunningServer, running
from bench.soak_load import SINK_PATHS, Done, Load, Pace
from bench.soak_report import (
    DATABASES,
    EDGE_FRACTION,
    flatness_table,
    judge,
    minute_rows,
    minutes_table,
    percentile,
    rates,
    render,
)
from bench.soak_sample import ResourceProbe, postgres_size_mb, sqlite_size_mb
from psycopg import sql

from dispatch.demo.providers import FakeProviders, provider_settings

BENCHMARK = "soak"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA = "bench_soak"
DRAIN_LIMIT_SECONDS = 120.0  # after the load, how long deliveries and messages may still take
HOLD_SECONDS = 5.0  # the sink's /hold… limit (the soak never holds)
# An operator's settings for a moderate load: rate limits above the load's rates (one key
# sends it all), and no cool-down between a listing's events, so every price change the
# syncs write can become an event.
SOAK_SETTINGS = {
    "STREAM_RATE_PER_MINUTE": "1000",
    "WATCH_RATE_PER_MINUTE": "100000",
    "WATCH_EVENT_COOLDOWN_SECONDS": "0",
}


@dataclass(frozen=True)
class Plan:
    minutes: float
    sample_seconds: float
    warmup_seconds: float
    row_seconds: float  # one row of the docs' table per this many seconds
    pace: Pace

    @property
    def seconds(self) -> float:
        return self.minutes * 60


def plan_for(minutes: float | None, *, quick: bool) -> Plan:
    if quick:
        length = minutes or 1.0
        return Plan(length, 5.0, length * 60 * EDGE_FRACTION, 15.0, Pace(sync_every_seconds=10.0))
    length = minutes or 10.0
    # Two minutes of warm-up on a full run (pools filled, caches warm, rules compiled).
    warmup = 120.0 if length >= 10 else length * 60 * EDGE_FRACTION
    return Plan(length, 10.0, warmup, 60.0, Pace())


# Storage ------------------------------------------------------------------------------------


@dataclass
class Storage:
    kind: str
    workdir: Path
    postgres_url: str

    @property
    def sqlite_file(self) -> Path | None:
        return self.workdir / "soak.db" if self.kind == "sqlite" else None

    @property
    def settings(self) -> dict[str, str]:
        if self.sqlite_file is not None:
            return {"DATABASE_URL": f"sqlite:///{self.sqlite_file}"}
        return {"DATABASE_URL": self.postgres_url, "DATABASE_SCHEMA": SCHEMA}

    def prepare(self, env: Mapping[str, str]) -> None:
        """A fresh schema migrated with `dispatch migrate` (SQLite: `dispatch serve` does it)."""
        if self.kind != "postgresql":
            return
        self.drop()
        with psycopg.connect(self.postgres_url, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        argv = [str(dispatch_executable()), "migrate", "--env-file", str(self.workdir / ".env")]
        done = subprocess.run(
            argv, cwd=self.workdir, env=dict(env), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"dispatch migrate failed:\n{done.stdout}{done.stderr}")

    def drop(self) -> None:
        if self.kind == "postgresql":
            with psycopg.connect(self.postgres_url, autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA))
                )

    def facts(self) -> dict[str, str]:
        """The PostgreSQL server's version and whether autovacuum runs (it shapes a soak)."""
        if self.kind != "postgresql":
            return {}
        query = "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)"
        with psycopg.connect(self.postgres_url, autocommit=True) as connection:
            rows = connection.execute(query, (["server_version", "autovacuum"],)).fetchall()
        return {str(name): str(setting) for name, setting in rows}

    def size_mb(self) -> float:
        if self.sqlite_file is not None:
            return sqlite_size_mb(self.sqlite_file)
        return postgres_size_mb(self.postgres_url, SCHEMA)


# The run ------------------------------------------------------------------------------------


class Sampler:
    """One sample per interval: the server's resources, what the load did in the window."""

    def __init__(self, server: RunningServer, load: Load, storage: Storage) -> None:
        self.server = server
        self.load = load
        self.storage = storage
        self.probe = ResourceProbe(
            server.process.pid, storage.settings["DATABASE_URL"], storage.sqlite_file
        )
        self.started = time.perf_counter()
        self.last = self.started
        self.samples: list[dict[str, Any]] = []
        self.done: list[Done] = []

    def alive(self) -> None:
        if self.server.process.poll() is not None:
            raise RuntimeError(f"dispatch serve exited with {self.server.process.returncode}")
        if errors := self.load.stream_errors():
            raise RuntimeError(f"a stream ended: {'; '.join(errors)}")

    async def take(self, phase: str) -> dict[str, Any]:
        self.alive()
        now = time.perf_counter()
        window = self.load.take_window()
        self.done += window
        resources = await asyncio.to_thread(self.probe.read)
        size = await asyncio.to_thread(self.storage.size_mb)
        ingest = [d.ms for d in window if d.kind == "ingest"]
        tally = self.load.tally
        sample = {
            "t": round(now - self.started, 1),
            "phase": phase,
            **asdict(resources),
            "db_size_mb": round(size, 2),
            "accepted": tally.accepted,
            "delivered": await self.load.delivered(),
            "listings": len(tally.listings),
            "syncs": len(tally.syncs),
            "events": self.load.events_received(),
            "errors": sum(tally.errors.values()),
            "requests": len(window),
            "requests_per_second": len(window) / (now - self.last),
            "ingest_p50_ms": percentile(ingest, 50),
            "ingest_p99_ms": percentile(ingest, 99),
            "all_p99_ms": percentile([d.ms for d in window], 99),
        }
        self.last = now
        self.samples.append(sample)
        common.report(
            f"  {sample['t']:6.0f} s  RSS {resources.rss_mb:6.1f} MB  fds {resources.fds:3d}  "
            f"db {resources.db_connections:2d}  threads {resources.threads:2d}  "
            f"{sample['requests_per_second']:5.1f} req/s  p99 {sample['ingest_p99_ms']:6.1f} ms  "
            f"accepted {tally.accepted:6d}  delivered {sample['delivered']:6d}  "
            f"events {sample['events']:6d}"
        )
        return sample


async def soak(server: RunningServer, load: Load, storage: Storage, plan: Plan) -> Sampler:
    """Set up, run the load for the planned time with samples, then drain."""
    await load.set_up()
    await load.start()
    sampler = Sampler(server, load, storage)
    await sampler.take("load")
    end = sampler.started + plan.seconds
    next_at = sampler.started + plan.sample_seconds
    while next_at <= end + 0.01:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await sampler.take("load")
        next_at += plan.sample_seconds
    await load.stop_load()
    common.report(f" load stopped; draining (at most {DRAIN_LIMIT_SECONDS:.0f} s)")
    deadline = time.perf_counter() + DRAIN_LIMIT_SECONDS
    while True:
        await asyncio.sleep(min(plan.sample_seconds, 5.0))
        sample = await sampler.take("drain")
        drained = sample["delivered"] >= load.tally.accepted
        if drained and not any(load.missing_listings().values()):
            break
        if time.perf_counter() > deadline:
            common.report(" drain limit reached")
            break
    return sampler


async def run(storage: Storage, plan: Plan, redis_url: str | None) -> dict[str, Any]:
    root = storage.workdir
    with FakeProviders() as fake, running(sink_spec(root, HOLD_SECONDS)) as sink_server:
        providers = {name.upper(): str(value) for name, value in provider_settings(fake).items()}
        extra = providers | SOAK_SETTINGS
        if redis_url:
            extra |= {"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": SCHEMA}
        env = dispatch_env(storage.settings, **extra)
        await asyncio.to_thread(storage.prepare, env)
        sink = SinkControl(sink_server.base_url)
        try:
            with running(serve_spec(root, "serve.log", env)) as server:
                common.report(
                    f"{storage.kind}: dispatch serve ready in {server.ready_seconds:.1f} s"
                )
                load = Load(server, sink, fake, plan.pace)
                try:
                    sampler = await soak(server, load, storage, plan)
                    outcome = await outcomes(load)
                finally:
                    await load.close()
        finally:
            await sink.close()
    return figures(sampler, outcome, plan)


async def outcomes(load: Load) -> dict[str, Any]:
    delivered = await load.delivered()
    tally = load.tally
    return {
        "accepted": tally.accepted,
        "delivered": delivered,
        "lost": max(0, tally.accepted - delivered),
        "delivered_by_resource": await load.delivered_by_path(),
        "listings": len(tally.listings),
        "events_received": load.events_received(),
        "events_per_stream": {c.name: c.messages for c in load.streams},
        "stream_missing_listings": load.missing_listings(),
        "syncs": len(tally.syncs),
        "sync_jobs": await load.sync_outcomes(),
        "errors": dict(tally.errors),
        "first_errors": tally.first_errors,
    }


def figures(sampler: Sampler, outcome: dict[str, Any], plan: Plan) -> dict[str, Any]:
    samples = sampler.samples
    return {
        "outcome": outcome,
        "rates": rates(sampler.done, plan.seconds),
        **judged(samples, plan.warmup_seconds),
        "rows": minute_rows(samples, sampler.done, sampler.started, plan.row_seconds),
        "samples": samples,
    }


def judged(samples: Sequence[Mapping[str, Any]], warmup_seconds: float) -> dict[str, Any]:
    """The flatness rows and whether every resource stayed flat."""
    flatness = judge(samples, warmup_seconds)
    return {
        "flatness": [row.as_json() for row in flatness],
        "all_flat": all(row.flat for row in flatness if row.resource),
    }


def failures(found: Mapping[str, Any]) -> list[str]:
    """Why the load itself failed, if it did (flatness is judged, never failed on)."""
    outcome = found["outcome"]
    problems = []
    if outcome["lost"]:
        problems.append(f"{outcome['lost']} of {outcome['accepted']} accepted tasks not delivered")
    if outcome["errors"]:
        problems.append(f"failed requests {outcome['errors']}: {outcome['first_errors']}")
    missing = {name: n for name, n in outcome["stream_missing_listings"].items() if n}
    if missing:
        problems.append(f"streams missed listings: {missing}")
    bad_syncs = {
        name: states
        for name, states in outcome["sync_jobs"]["states"].items()
        if set(states) - {"succeeded"}
    }
    if bad_syncs:
        problems.append(f"syncs not succeeded: {bad_syncs} {outcome['sync_jobs']['errors']}")
    return problems


# Results and docs ---------------------------------------------------------------------------


def load_saved() -> dict[str, Any]:
    path = common.RESULTS_DIR / f"{BENCHMARK}.json"
    if not path.exists():
        return {"benchmark": BENCHMARK, "runs": {}}
    saved: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return saved


def docs_section(saved: Mapping[str, Any]) -> str:
    return render(
        saved, drain_seconds=DRAIN_LIMIT_SECONDS, schema=SCHEMA, postgres_url=DEFAULT_POSTGRES_URL
    )


def publish(kind: str, found: dict[str, Any]) -> None:
    """Keep the other database's figures; rewrite the results file and the docs section."""
    saved = load_saved()
    saved.setdefault("runs", {})[kind] = found
    common.write_results(BENCHMARK, saved)
    common.update_docs_section(BENCHMARK, docs_section(saved))


def render_saved() -> int:
    """Judge the saved samples again and rewrite the docs (after a change to this script)."""
    saved = load_saved()
    for found in saved.get("runs", {}).values():
        found |= judged(found["samples"], found["settings"]["warmup_seconds"])
    common.write_results(BENCHMARK, saved)
    common.update_docs_section(BENCHMARK, docs_section(saved))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="A one-minute smoke run")
    parser.add_argument("--minutes", type=float, help="Length of the load (default 10, quick 1)")
    parser.add_argument("--database", choices=DATABASES, default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--redis-url", default="", help="Give Dispatch a Redis (not needed by one process)"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="Rewrite docs/benchmarks.md from bench/results/soak.json without measuring",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        return render_saved()
    common.exit_on_sigterm()
    common.warn_if_busy()
    machine = common.machine_info()  # before the run, so the load average is other processes'
    if LOAD_CPUS and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, LOAD_CPUS)  # the server under test gets SERVER_CPUS
    plan = plan_for(args.minutes, quick=args.quick)
    common.report(
        f"{BENCHMARK}: {args.database}, {plan.minutes:g} min, sample every "
        f"{plan.sample_seconds:g} s, warm-up {plan.warmup_seconds:.0f} s"
    )
    with tempfile.TemporaryDirectory(prefix="dispatch-bench-soak-") as tmp:
        storage = Storage(args.database, Path(tmp), args.postgres_url)
        postgres_facts = storage.facts()
        try:
            found = asyncio.run(run(storage, plan, args.redis_url or None))
        finally:
            storage.drop()
    found["machine"] = machine
    found["settings"] = asdict(plan) | {
        "quick": args.quick,
        "database": args.database,
        "server_cpus": sorted(SERVER_CPUS),
        "load_cpus": sorted(LOAD_CPUS),
        "sink_paths": list(SINK_PATHS),
        "postgres": postgres_facts,
    }
    found["failures"] = failures(found)
    publish(args.database, found)
    print(f"\n{args.database}: flatness after a {plan.warmup_seconds:.0f} s warm-up")
    print(flatness_table(found["flatness"]))
    print()
    print(minutes_table(found["rows"]))
    outcome = found["outcome"]
    print(
        f"\naccepted {outcome['accepted']:,}, delivered {outcome['delivered']:,}, "
        f"lost {outcome['lost']}; events received {outcome['events_received']:,}; "
        f"syncs {outcome['sync_jobs']['states']}"
    )
    if found["failures"]:
        for problem in found["failures"]:
            print(f"load failed: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
