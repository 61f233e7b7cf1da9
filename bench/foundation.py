"""Foundation benchmark: start-up time, idle memory and HTTP overhead against bare FastAPI.

Everything is measured in one run, one server at a time (the reference machine has two
cores, shared with wrk): Dispatch's start-up and idle RSS on SQLite, then throughput and p99
latency of ``GET /health`` and an authenticated ``GET /api/v1/keys`` for Dispatch and for
``bench/bare_app.py`` over a copy of the same database.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module: the repository root takes its place (runnable from anywhere).
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    REPO_ROOT,
    Row,
    base_env,
    exit_on_sigterm,
    machine_info,
    markdown_table,
    update_docs_section,
    warn_if_busy,
    write_results,
)
from bench.loadgen import CONNECTIONS, THREADS, LoadError, LoadResult, ensure_wrk, run_wrk
from bench.serving import LOAD_CPUS, SERVER_CPUS, RunningServer, ServerSpec, free_port, running

BENCHMARK = "foundation"
MASTER_KEY = "dsp_bench_foundation_master_key_0123456789abcdef"
KEY_HEADER = {"X-Dispatch-Key": MASTER_KEY}
ENDPOINTS = {"health": "/health", "keys": "/api/v1/keys"}
START_ROUNDS = 3
IDLE_SETTLE_SECONDS = 2.0
KEY_COUNT = 5
RSS_TARGET_MB = 120.0
THROUGHPUT_RATIO_TARGET = 0.75
DEFAULT_SECONDS = 10
QUICK_SECONDS = 2
# Load alternates between the two servers for this many rounds and reports medians: on a
# two-core machine one run can be 20% off, and alternating spreads the drift over both.
LOAD_ROUNDS = 5


@dataclass
class Measured:
    """One server's figures: start-ups (seconds), idle RSS samples (MB), load per endpoint."""

    starts: list[float] = field(default_factory=list)
    migrating_starts: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    load: dict[str, list[LoadResult]] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "start_seconds": self.starts,
            "migrating_start_seconds": self.migrating_starts,
            "idle_rss_mb": self.rss_mb,
            "load_rounds": {
                name: [result.as_json() for result in rounds] for name, rounds in self.load.items()
            },
        }

    def median_rps(self, name: str) -> float:
        return statistics.median(result.requests_per_second for result in self.load[name])

    def median_p99(self, name: str) -> float:
        return statistics.median(result.p99_ms for result in self.load[name])


def dispatch_spec(workdir: Path, log_name: str) -> ServerSpec:
    """``dispatch serve`` on a SQLite file in ``workdir``, with limits too high to refuse."""
    executable = Path(sys.executable).parent / "dispatch"
    if not executable.exists():
        raise SystemExit(f"{executable} not found; run this with the project's .venv/bin/python")
    port = free_port()
    env = base_env() | {
        "DATABASE_URL": f"sqlite:///{workdir / 'dispatch.db'}",
        "MASTER_KEY": MASTER_KEY,
        "LOG_LEVEL": "WARNING",
        "REQUEST_RATE_PER_MINUTE": "100000000",
        "ENVIRONMENT": "development",
    }
    argv = [str(executable), "serve", "--port", str(port), "--env-file", str(workdir / ".env")]
    return ServerSpec(argv, env, workdir, port, workdir / log_name)


def bare_spec(workdir: Path, log_name: str) -> ServerSpec:
    """``bench/bare_app.py`` over the database copy in ``workdir``."""
    port = free_port()
    argv = [
        sys.executable,
        str(REPO_ROOT / "bench" / "bare_app.py"),
        "--port",
        str(port),
        "--database-url",
        f"sqlite:///{workdir / 'dispatch.db'}",
        "--key",
        MASTER_KEY,
    ]
    return ServerSpec(argv, base_env(), workdir, port, workdir / log_name)


def sample_start(spec: ServerSpec, label: str) -> tuple[float, float]:
    """Start-up seconds and idle RSS (MB) of one start, after letting the server settle."""
    with running(spec) as server:
        time.sleep(IDLE_SETTLE_SECONDS)
        rss = server.rss_mb()
    print(
        f"  {label}: ready in {server.ready_seconds:.3f} s, idle RSS {rss:.1f} MB", file=sys.stderr
    )
    return server.ready_seconds, rss


def load_once(server: RunningServer, name: str, seconds: int) -> LoadResult:
    """One measured wrk run against one endpoint, after a short warm-up."""
    url = server.base_url + ENDPOINTS[name]
    headers = KEY_HEADER if name == "keys" else None
    run_wrk(url, max(1, min(3, seconds // 5)), headers)
    result = run_wrk(url, seconds, headers)
    print(
        f"  {server.base_url} {ENDPOINTS[name]}: {result.requests_per_second:,.0f} req/s, "
        f"p99 {result.p99_ms:.2f} ms",
        file=sys.stderr,
    )
    return result


def measure_load(
    ours: Measured, bare: Measured, specs: tuple[ServerSpec, ServerSpec], seconds: int
) -> None:
    """Both servers up (idle when not loaded); wrk alternates between them each round."""
    with running(specs[0]) as dispatch_server, running(specs[1]) as bare_server:
        for name in ENDPOINTS:
            for round_no in range(1, LOAD_ROUNDS + 1):
                print(f"round {round_no}, {name}:", file=sys.stderr)
                ours.load.setdefault(name, []).append(load_once(dispatch_server, name, seconds))
                bare.load.setdefault(name, []).append(load_once(bare_server, name, seconds))


def listed_keys(server: RunningServer) -> list[object]:
    """The ``items`` of ``GET /api/v1/keys``; checks the server lists what was created."""
    response = httpx.get(server.base_url + "/api/v1/keys", headers=KEY_HEADER, timeout=10)
    response.raise_for_status()
    items: list[object] = response.json()["items"]
    if len(items) != KEY_COUNT:
        raise RuntimeError(f"expected {KEY_COUNT} keys from {server.base_url}, got {len(items)}")
    return items


def create_keys(server: RunningServer) -> None:
    """Give the listing some content, through the API as a client would."""
    with httpx.Client(base_url=server.base_url, headers=KEY_HEADER, timeout=10) as client:
        for n in range(1, KEY_COUNT + 1):
            response = client.post("/api/v1/keys", json={"name": f"bench-{n}", "scopes": ["read"]})
            response.raise_for_status()


def measure_dispatch(root: Path) -> tuple[Measured, Path, list[object]]:
    """Start-ups on fresh and migrated databases, then keys to list; returns that database."""
    measured = Measured()
    workdirs = [root / f"dispatch-{round_no}" for round_no in range(1, START_ROUNDS + 1)]
    for round_no, workdir in enumerate(workdirs, start=1):
        workdir.mkdir()
        migrating, rss = sample_start(dispatch_spec(workdir, "cold.log"), f"start {round_no} cold")
        measured.migrating_starts.append(migrating)
        measured.rss_mb.append(rss)
        warm, rss = sample_start(dispatch_spec(workdir, "warm.log"), f"start {round_no} warm")
        measured.starts.append(warm)
        measured.rss_mb.append(rss)
    loaded = workdirs[-1]
    with running(dispatch_spec(loaded, "keys.log")) as server:
        create_keys(server)
        items = listed_keys(server)
    return measured, loaded / "dispatch.db", items


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy through SQLite's backup API (a file copy could miss the WAL)."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def measure_bare(root: Path, database: Path, items: list[object]) -> tuple[Measured, Path]:
    """The baseline's start-ups over a copy of Dispatch's database; returns its workdir."""
    measured = Measured()
    workdir = root / "bare"
    workdir.mkdir()
    copy_database(database, workdir / "dispatch.db")
    for round_no in range(1, START_ROUNDS + 1):
        ready, rss = sample_start(bare_spec(workdir, f"start-{round_no}.log"), f"start {round_no}")
        measured.starts.append(ready)
        measured.rss_mb.append(rss)
    with running(bare_spec(workdir, "check.log")) as server:
        if listed_keys(server) != items:
            raise RuntimeError("the bare app lists different keys than Dispatch")
    return measured, workdir


def summarise(ours: Measured, bare: Measured) -> list[Row]:
    """The table: medians for start-up, the worst idle RSS, load figures per endpoint."""
    rss = max(ours.rss_mb)
    rows = [
        Row(
            "Start-up, first start with migrations (s)",
            statistics.median(ours.migrating_starts),
            decimals=3,
        ),
        Row(
            "Start-up, restart (s)",
            statistics.median(ours.starts),
            statistics.median(bare.starts),
            decimals=3,
        ),
        Row(
            f"Idle RSS, worst of {len(ours.rss_mb)} starts (MB)",
            rss,
            max(bare.rss_mb),
            decimals=1,
            target=f"< {RSS_TARGET_MB:.0f} MB",
            met=rss < RSS_TARGET_MB,
        ),
    ]
    for name, path in ENDPOINTS.items():
        mine, base = ours.median_rps(name), bare.median_rps(name)
        rows.append(
            Row(
                f"GET {path} throughput, median of {LOAD_ROUNDS} (req/s)",
                mine,
                base,
                decimals=0,
                target=f"ratio >= {THROUGHPUT_RATIO_TARGET}",
                met=mine / base >= THROUGHPUT_RATIO_TARGET,
            )
        )
        paired = [
            a.requests_per_second / b.requests_per_second
            for a, b in zip(ours.load[name], bare.load[name], strict=True)
        ]
        rows.append(
            Row(
                f"GET {path} same-round ratio Dispatch/bare, median of {LOAD_ROUNDS}",
                statistics.median(paired),
            )
        )
        rows.append(
            Row(
                f"GET {path} p99 latency, median of {LOAD_ROUNDS} (ms)",
                ours.median_p99(name),
                bare.median_p99(name),
            )
        )
    return rows


def render_table(rows: Sequence[Row]) -> str:
    header = ["Metric", "Dispatch", "bare FastAPI", "ratio", "target", "met?"]
    return markdown_table(header, [row.cells() for row in rows])


def render_section(rows: Sequence[Row], machine: dict[str, object], seconds: int) -> str:
    """The docs section: what was measured, the table, and the machine it ran on."""
    return f"""## Foundation: start-up, memory and HTTP overhead

`bench/foundation.py` starts `dispatch serve` on a fresh SQLite database {START_ROUNDS} times
(each first start runs the migrations, then a restart on the migrated database), reads idle
RSS {IDLE_SETTLE_SECONDS:.0f} s after `/health` first answers, and then loads `GET /health` and
an authenticated `GET /api/v1/keys` ({KEY_COUNT} keys) with `wrk -t{THREADS} -c{CONNECTIONS}`,
alternating between the two servers for {LOAD_ROUNDS} rounds and reporting medians. Servers run
pinned to core 0 and wrk to core 1, so the load generator never competes with the server.
The baseline, `bench/bare_app.py`, is plain FastAPI serving the same two routes over a copy of
the same database on the same uvicorn options, without Dispatch's middleware, key hashing or
rate limiter. Ratio is Dispatch / bare FastAPI; start-up figures are medians.

{render_table(rows)}

Last run {machine["date"]}: {machine["cpu_count"]} cores ({machine["cpu_model"]}),
Python {machine["python"]}, {seconds} s of load per case.
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--duration", type=int, default=DEFAULT_SECONDS, help="Whole seconds of load per case"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_SECONDS} s per case, for development"
    )
    args = parser.parse_args(argv)
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    if args.quick:
        args.duration = QUICK_SECONDS
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    try:
        ensure_wrk()  # fail before spending a minute on start-ups
    except LoadError as exc:
        raise SystemExit(f"{BENCHMARK}: {exc}") from None
    warn_if_busy()
    machine = machine_info()  # before the run, so the load average is other processes'
    with tempfile.TemporaryDirectory(prefix="dispatch-bench-") as tmp:
        root = Path(tmp)
        print("Dispatch start-ups:", file=sys.stderr)
        ours, database, items = measure_dispatch(root)
        print("bare FastAPI start-ups:", file=sys.stderr)
        bare, bare_dir = measure_bare(root, database, items)
        specs = (dispatch_spec(database.parent, "load.log"), bare_spec(bare_dir, "load.log"))
        measure_load(ours, bare, specs, args.duration)
    rows = summarise(ours, bare)
    settings = {
        "duration_seconds": args.duration,
        "threads": THREADS,
        "connections": CONNECTIONS,
        "start_rounds": START_ROUNDS,
        "load_rounds": LOAD_ROUNDS,
        "server_cpus": sorted(SERVER_CPUS),
        "load_cpus": sorted(LOAD_CPUS),
        "idle_settle_seconds": IDLE_SETTLE_SECONDS,
    }
    payload = {
        "benchmark": BENCHMARK,
        "machine": machine,
        "settings": settings,
        "dispatch": ours.as_json(),
        "bare_fastapi": bare.as_json(),
        "summary": [row.as_json() for row in rows],
        "all_targets_met": all(row.met for row in rows if row.met is not None),
    }
    write_results(BENCHMARK, payload)
    update_docs_section(BENCHMARK, render_section(rows, machine, args.duration))
    print(render_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
