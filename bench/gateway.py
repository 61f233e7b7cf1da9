"""Gateway benchmark: durable ingest, end-to-end delivery, delivery latency, failover and memory.

On SQLite and on PostgreSQL, in one run: ``POST /api/{path}`` throughput and latency against a
bare FastAPI route doing one INSERT; tasks delivered per second from the first 202 to the last
arrival at a local sink against a bare aiohttp client posting to the same sink (and httpx
beside it, which is how the delivery client was chosen); POST-to-first-attempt latency at a
steady rate; what failing over from a refusing or a 500-answering resource adds; the serving
process's RSS with 500 deliveries in flight; and, on PostgreSQL, two API and two worker
processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module: the repository root takes its place (runnable from anywhere).
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from bench.common import (
    exit_on_sigterm,
    machine_info,
    update_docs_section,
    warn_if_busy,
    write_results,
)
from bench.gateway_deploy import (
    Route,
    Storage,
    StorageKind,
    bare_ingest_spec,
    configure,
    dispatch_env,
    dispatch_workers,
    serve_spec,
    sink_spec,
    wait_announced,
)
from bench.gateway_report import (
    FAILOVER_ROUTES,
    IN_FLIGHT,
    MEMORY_MAX_CONNECTIONS,
    SCALE_OUT_PROCESSES,
    Run,
    StorageResults,
    render_section,
    render_table,
    summarise,
)
from bench.gateway_runs import (
    CLIENT_CHOICES,
    DELIVERY_CONCURRENCY,
    FAILOVER_RATE,
    IN_FLIGHT_WAIT_SECONDS,
    INGEST_CONCURRENCY,
    LATENCY_RATE,
    POST_CONCURRENCY,
    WRK_TIMEOUT_SECONDS,
    SinkControl,
    alive_check,
    ingest_once,
    measure_burst,
    measure_client,
    measure_failover,
    measure_latency,
    measure_memory,
    warm_up,
    write_post_script,
)
from bench.loadgen import LoadError, ensure_wrk
from bench.serving import LOAD_CPUS, SERVER_CPUS, running, running_all

from dispatch.telemetry.logging import configure_logging

BENCHMARK = "gateway"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
STORAGE_KINDS: tuple[StorageKind, ...] = ("SQLite", "PostgreSQL")
RESOURCE_TIMEOUT_SECONDS = 10.0
HOLD_LIMIT_SECONDS = 60.0  # the sink answers held requests after this long at the latest

# Sized for about 10 minutes in all at today's delivery rates (and 2 with --quick).
FULL = Run(5, 3, 1_500, 3, 3.0, 10.0, 60)
QUICK = Run(2, 1, 300, 1, 2.0, 2.0, 15)


def closed_port() -> int:
    """A loopback port nothing listens on once the probe socket is closed: connections refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def delivery_routes(sink: SinkControl) -> list[Route]:
    """The sink alone, and the sink behind a refusing and behind a 500-answering resource."""
    refused = f"http://127.0.0.1:{closed_port()}/refused"
    return [
        Route("deliver", (("sink", sink.url("deliver")),)),
        Route("after-refused", (("refused", refused), ("sink-2", sink.url("after-refused")))),
        Route("after-500", (("failing", sink.url("fail")), ("sink-3", sink.url("after-500")))),
    ]


async def measure_ingest(storage: Storage, run: Run, results: StorageResults) -> None:
    """Dispatch (no worker) and the bare INSERT app both up; wrk alternates between them."""
    print(f"{storage.kind}: ingest", file=sys.stderr)
    ours_db = await storage.fresh("ingest", migrate=True)
    bare_db = await storage.fresh("ingest_bare", migrate=False)
    script = write_post_script(storage.workdir / "post.lua")
    env = dispatch_env(ours_db, WORKER_ENABLED="false")
    routes = [Route("ingest", (("nowhere", f"http://127.0.0.1:{closed_port()}/"),))]
    with running(serve_spec(storage.workdir, "ingest.log", env)) as ours:
        token = configure(ours, routes, RESOURCE_TIMEOUT_SECONDS)
        with running(bare_ingest_spec(storage.workdir, bare_db, token)) as bare:
            for connections in INGEST_CONCURRENCY:
                for round_no in range(1, run.ingest_rounds + 1):
                    print(f" round {round_no}, {connections} connections:", file=sys.stderr)
                    for side, server in (("dispatch", ours), ("bare", bare)):
                        url = f"{server.base_url}/api/ingest"
                        result = ingest_once(url, token, script, connections, run.ingest_seconds)
                        results.add_ingest(side, connections, result)


async def measure_delivery(
    storage: Storage, sink: SinkControl, run: Run, results: StorageResults
) -> None:
    """`dispatch serve` with the embedded worker: bursts alternating with the bare clients,
    then paced latency and failover."""
    print(f"{storage.kind}: delivery, embedded worker", file=sys.stderr)
    env = dispatch_env(
        await storage.fresh("delivery", migrate=True),
        WORKER_ENABLED="true",
        WORKER_CONCURRENCY=str(DELIVERY_CONCURRENCY),
    )
    with running(serve_spec(storage.workdir, "delivery.log", env)) as server:
        token = configure(server, delivery_routes(sink), RESOURCE_TIMEOUT_SECONDS)
        alive = alive_check(server)
        await warm_up([server.base_url], sink, token, alive)
        for round_no in range(1, run.burst_rounds + 1):
            print(f" round {round_no}:", file=sys.stderr)
            results.bursts.append(
                await measure_burst([server.base_url], sink, token, run.burst_tasks, alive)
            )
            for client in CLIENT_CHOICES:
                limit = await asyncio.to_thread(measure_client, client, sink, run.client_seconds)
                results.clients.setdefault(client, []).append(limit)
        print(f" {LATENCY_RATE} tasks/s for {run.latency_seconds:g} s:", file=sys.stderr)
        results.latency, results.lost["latency"] = await measure_latency(
            server.base_url, sink, token, run.latency_seconds, alive
        )
        print(
            f" failover, {FAILOVER_RATE} tasks/s over {len(FAILOVER_ROUTES)} routes:",
            file=sys.stderr,
        )
        results.failover, results.lost["failover"] = await measure_failover(
            server.base_url, sink, token, FAILOVER_ROUTES, run.failover_per_route, alive
        )


async def measure_rss(storage: Storage, sink: SinkControl, results: StorageResults) -> None:
    """The embedded worker with room for IN_FLIGHT deliveries, the sink holding each one."""
    print(f"{storage.kind}: memory with {IN_FLIGHT} deliveries in flight", file=sys.stderr)
    env = dispatch_env(
        await storage.fresh("memory", migrate=True),
        WORKER_ENABLED="true",
        WORKER_CONCURRENCY=str(IN_FLIGHT),
        MAX_CONNECTIONS=str(MEMORY_MAX_CONNECTIONS),
    )
    routes = [
        Route("deliver", (("sink", sink.url("deliver")),)),
        Route("hold", (("sink-hold", sink.url("hold")),)),
    ]
    with running(serve_spec(storage.workdir, "memory.log", env)) as server:
        # Held requests must not time out: the hold is what is measured.
        token = configure(server, routes, HOLD_LIMIT_SECONDS + 10)
        await warm_up([server.base_url], sink, token, alive_check(server))
        results.memory = await measure_memory(server, sink, token, IN_FLIGHT)


async def measure_scale_out(
    storage: Storage, sink: SinkControl, run: Run, results: StorageResults
) -> None:
    """Two `dispatch serve` without worker (the posts split between them), two `dispatch worker`.

    All four start at once; the APIs are waited for, then the workers' announcements. They
    may run on every core (shared with PostgreSQL, the sink and the poster): pinned to the
    one server core, four processes would only take turns on it, which measures time-sharing
    rather than scaling out."""
    print(f"{storage.kind}: delivery, 2 API + 2 worker processes", file=sys.stderr)
    database = await storage.fresh("scale_out", migrate=True)
    api_env = dispatch_env(database, WORKER_ENABLED="false")
    worker_env = dispatch_env(database, WORKER_CONCURRENCY=str(DELIVERY_CONCURRENCY))
    workdir = storage.workdir
    every_core = frozenset(range(os.cpu_count() or 1))
    specs = [
        serve_spec(workdir, f"api-{n}.log", api_env, every_core)
        for n in range(1, SCALE_OUT_PROCESSES + 1)
    ]
    with (
        dispatch_workers(workdir, worker_env, SCALE_OUT_PROCESSES, every_core) as workers,
        running_all(specs) as servers,
    ):
        schema = database["DATABASE_SCHEMA"]
        wait_announced(workers, workdir, schema, storage.postgres_url)
        deliver = [Route("deliver", (("sink", sink.url("deliver")),))]
        token = configure(servers[0], deliver, RESOURCE_TIMEOUT_SECONDS)
        api_alive = alive_check(*servers)

        def alive() -> None:
            api_alive()
            for worker in workers:
                if worker.poll() is not None:
                    raise RuntimeError(f"dispatch worker exited with {worker.returncode}")

        apis = [server.base_url for server in servers]
        await warm_up(apis, sink, token, alive)
        for round_no in range(1, run.burst_rounds + 1):
            print(f" round {round_no}:", file=sys.stderr)
            results.scale_out.append(await measure_burst(apis, sink, token, run.burst_tasks, alive))


async def measure_all(run: Run, root: Path, postgres_url: str) -> dict[StorageKind, StorageResults]:
    results: dict[StorageKind, StorageResults] = {}
    storages = [Storage(kind, root / kind.lower(), postgres_url) for kind in STORAGE_KINDS]
    with running(sink_spec(root, HOLD_LIMIT_SECONDS)) as sink_server:
        sink = SinkControl(sink_server.base_url)
        try:
            for storage in storages:
                storage.workdir.mkdir()
                found = results[storage.kind] = StorageResults(storage.kind)
                try:
                    await measure_ingest(storage, run, found)
                    await measure_delivery(storage, sink, run, found)
                    await measure_rss(storage, sink, found)
                    if storage.kind == "PostgreSQL":
                        await measure_scale_out(storage, sink, run, found)
                finally:
                    storage.drop_all()
        finally:
            await sink.close()
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="One short round of everything, for development"
    )
    parser.add_argument(
        "--postgres-url", default=DEFAULT_POSTGRES_URL, help="A database on the PostgreSQL server"
    )
    return parser.parse_args(argv)


def check_postgres(url: str) -> None:
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        raise SystemExit(f"{BENCHMARK}: cannot reach PostgreSQL at {url}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    configure_logging("WARNING", "console")  # the in-process migrations log
    try:
        ensure_wrk()
    except LoadError as exc:
        raise SystemExit(f"{BENCHMARK}: {exc}") from None
    check_postgres(args.postgres_url)
    warn_if_busy()
    machine = machine_info()  # before the run, so the load average is other processes'
    if LOAD_CPUS and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, LOAD_CPUS)  # the poster; what is measured gets SERVER_CPUS
    run = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="dispatch-bench-gateway-") as tmp:
        results = asyncio.run(measure_all(run, Path(tmp), args.postgres_url))
    tables = summarise(results, run)
    payload = {
        "benchmark": BENCHMARK,
        "machine": machine,
        "settings": asdict(run)
        | {
            "quick": args.quick,
            "ingest_connections": list(INGEST_CONCURRENCY),
            "delivery_concurrency": DELIVERY_CONCURRENCY,
            "post_concurrency": POST_CONCURRENCY,
            "latency_rate": LATENCY_RATE,
            "failover_rate": FAILOVER_RATE,
            "in_flight": IN_FLIGHT,
            "hold_limit_seconds": HOLD_LIMIT_SECONDS,
            "in_flight_wait_seconds": IN_FLIGHT_WAIT_SECONDS,
            "wrk_timeout_seconds": WRK_TIMEOUT_SECONDS,
            "memory_max_connections": MEMORY_MAX_CONNECTIONS,
            "server_cpus": sorted(SERVER_CPUS),
            "load_cpus": sorted(LOAD_CPUS),
        },
        "results": {kind: found.as_json() for kind, found in results.items()},
        "summary": {kind: [row.as_json() for row in rows] for kind, rows in tables.items()},
        "all_targets_met": all(
            row.met for rows in tables.values() for row in rows if row.met is not None
        ),
    }
    write_results(BENCHMARK, payload)
    section = render_section(tables, run, machine, args.postgres_url, quick=args.quick)
    update_docs_section(BENCHMARK, section)
    for kind, rows in tables.items():
        print(f"\n{kind}\n" + render_table(kind, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
