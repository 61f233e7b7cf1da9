"""Fleet benchmark: 1,000 simulated rescue nodes polling for copies over HTTP, and reassignment.

On PostgreSQL (and on SQLite, for information), a real ``dispatch serve`` with the embedded
worker and, beside it, ``bench/bare_fleet.py`` (plain FastAPI, one ``SKIP LOCKED`` claim per
request) hold the same assets. Simulated nodes (asyncio tasks of this process sharing one
aiohttp session) poll ``/dispatch`` as fast as answers come, reporting each copy at once or
not, one or five copies per poll, and at the issue's rate on a schedule; every workload runs
on Dispatch and then on the baseline. Drills on a server with short leases time how soon the
copies of a node that falls silent are handed to other nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import orjson
import psycopg
import uvloop
from bench import bare_fleet, common
from bench.gateway_deploy import ADMIN, dispatch_env, migrate_dispatch, serve_spec
from bench.serving import LOAD_CPUS, ServerSpec, free_port, running_all
from psycopg import sql

from dispatch.config import Settings

BENCHMARK = "fleet"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "bench_fleet_"
RESCUE = "/api/v1/rescue"
ADMIN_JSON = ADMIN | {"Content-Type": "application/json"}
REPLICAS = 2  # RESCUE_REPLICATION_TARGET's default: each asset is two copies
BARE_POOL_FACTOR = 3
# POST /rescue/assets takes up to 10,000 assets; 5,000 in seed 004's shape are about 1 MB.
IMPORT_BATCH = 5_000
REGISTER_CONCURRENCY = 16
REQUEST_TIMEOUT_SECONDS = 30.0
PACED_GRACE_SECONDS = 10.0
SETTLE_SECONDS = 3.0  # between runs, so requests a client gave up on are not measured next
ASSIGNMENTS_TARGET = 500.0  # per second, on PostgreSQL
P99_TARGET_MS = 100.0
# Nothing the benchmark does may be refused by a rate limit or the daily cap; leases and
# silence outlast the run, so no lease expires between workloads.
UNLIMITED = {
    "REQUEST_RATE_PER_MINUTE": "100000000",
    "NODE_REQUEST_RATE_PER_MINUTE": "100000000",
    "NODE_CLAIM_RATE_PER_MINUTE": "100000000",
    "RESCUE_NODE_DAILY_ASSETS": "0",
    "WORKER_ENABLED": "true",
    # 10,000 assets in seed 004's shape are about 2 MB of JSON, over the 1 MiB default.
    "MAX_REQUEST_BODY_BYTES": str(8 * 1024 * 1024),
}
LONG_LEASES = {"NODE_LEASE_SECONDS": "3600", "NODE_SILENT_SECONDS": "3600"}
DRILL_LEASE_SECONDS, DRILL_SILENT_SECONDS, DRILL_UPKEEP_SECONDS = 5.0, 5.0, 1.0
DRILL_SETTINGS = {
    "NODE_LEASE_SECONDS": f"{DRILL_LEASE_SECONDS:g}",
    "NODE_SILENT_SECONDS": f"{DRILL_SILENT_SECONDS:g}",
    "QUEUE_UPKEEP_INTERVAL_SECONDS": f"{DRILL_UPKEEP_SECONDS:g}",
}
DRILL_LIVE_NODES = 4
DRILL_POLL_SECONDS = 0.1
DRILL_HEARTBEAT_AFTER_SECONDS = 1.0
DRILL_GIVE_UP_SECONDS = 60.0
KIND_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
HEADER = ["Metric", "Dispatch", "bare SKIP LOCKED app", "ratio", "target", "met?"]


@dataclass(frozen=True)
class Plan:
    assets: int  # each is REPLICAS copies
    nodes: int
    in_flight: int  # requests in flight at once in the closed-loop workloads
    warm_up_seconds: float
    seconds: float
    paced_rate: float  # polls per second offered by all nodes together, one copy each
    drills: int
    drill_copies: int


FULL = Plan(50_000, 1_000, 64, 5.0, 25.0, 500.0, 3, 20)
QUICK = Plan(5_000, 200, 32, 1.0, 5.0, 250.0, 1, 5)


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    report: bool  # each node reports its copies right after receiving them
    paced: bool  # each node polls on a schedule instead of as fast as answers come
    limit: int = 1  # copies asked for per poll
    rate_factor: float = 1.0  # paced: offers this times the plan's rate of copies


# The poll-only workloads run last: they leave their copies leased.
PACED_BATCH = Workload(
    "paced_batch", "5 copies per poll, paced", report=False, paced=True, limit=5, rate_factor=1.2
)
WORKLOADS = (
    Workload("cycle", "poll + report, closed loop", report=True, paced=False),
    Workload("poll", "poll only, closed loop", report=False, paced=False),
    # Nodes asking for several copies at once (seed 004's dispatch answers a list), at the
    # issue's rate of assignments and a fifth more (so "met" needs every copy served). Before
    # the paced run of one copy per poll, which Dispatch cannot keep up with: its backlog
    # would still be draining into the next run.
    PACED_BATCH,
    Workload("paced", "poll only, paced", report=False, paced=True),
    Workload("batch", "5 copies per poll, closed loop", report=False, paced=False, limit=5),
)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Data -------------------------------------------------------------------------------------


def make_assets(count: int, tag: str) -> list[dict[str, Any]]:
    """Seed 004's asset shape: priorities 1-10, sizes log-normal around 150 MB (capped 50 GB)."""
    rng = random.Random(f"fleet-{tag}")
    return [
        {
            "ds_id": f"{tag}-{n // 10}",
            "res_id": str(n),
            "name": f"resource-{n}.csv",
            "path": f"/{tag}/{n // 10}/resource-{n}.csv",
            "url": f"https://data.example.org/{tag}/{n}.csv",
            "size_mb": round(min(rng.lognormvariate(5.0, 1.5), 50_000.0), 1),
            "priority": rng.randint(1, 10),
        }
        for n in range(count)
    ]


def free_space_gb(rng: random.Random) -> float:
    """Log-uniform between 5 GB and 2 TB: most copies fit most nodes, big ones fewer."""
    return round(math.exp(rng.uniform(math.log(5), math.log(2000))), 1)


@dataclass(frozen=True)
class SimNode:
    node_id: str
    token: str
    free_space_gb: float

    def dispatch_body(self, limit: int) -> bytes:
        return orjson.dumps(
            {
                "name": self.node_id,
                "node_id": self.node_id,
                "free_space_gb": self.free_space_gb,
                "limit": limit,
            }
        )

    def report_body(self, copies: Sequence[Mapping[str, Any]]) -> bytes:
        assets = [
            {
                "asset_id": copy["asset_id"],
                "job_id": copy["job_id"],
                "lease_token": copy.get("lease_token"),
                "url": copy["url"],
                "magnet_link": f"magnet:?xt=urn:btih:{copy['job_id']:040x}",
                "status": "SUCCESS",
            }
            for copy in copies
        ]
        return orjson.dumps({"rescuer_id": self.node_id, "assets": assets})

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "X-Node-Token": self.token}


# Load -------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], p: int) -> float | None:
    if len(samples) < 2:
        return samples[0] if samples else None
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


@dataclass
class Tally:
    """Copies whose answer arrived inside the measured window, and the latencies of the
    requests that started (or were due) inside it."""

    start: float
    seconds: float
    polls: int = 0
    assigned: int = 0
    empty: int = 0  # 204: nothing fitted (the pool should never run dry)
    unsent: int = 0  # paced polls the fleet could not send in time: the server fell behind
    reports: int = 0
    failed: int = 0
    first_failure: str | None = None
    poll_ms: list[float] = field(default_factory=list)
    report_ms: list[float] = field(default_factory=list)

    def counts(self, moment: float) -> bool:
        return self.start <= moment <= self.start + self.seconds

    def fail(self, what: str) -> None:
        self.failed += 1
        if self.first_failure is None:
            self.first_failure = what[:500]

    def as_json(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "polls": self.polls,
            "assigned": self.assigned,
            "empty": self.empty,
            "unsent": self.unsent,
            "reports": self.reports,
            "failed": self.failed,
            "first_failure": self.first_failure,
            "assignments_per_second": self.assigned / self.seconds,
            "polls_per_second": self.polls / self.seconds,
            "poll_p50_ms": percentile(self.poll_ms, 50),
            "poll_p99_ms": percentile(self.poll_ms, 99),
            "report_p50_ms": percentile(self.report_ms, 50),
            "report_p99_ms": percentile(self.report_ms, 99),
        }


@dataclass(frozen=True)
class Side:
    """A server under test and where its two routes are."""

    name: str
    base_url: str
    prefix: str  # "" for the bare app

    def url(self, route: str) -> str:
        return f"{self.base_url}{self.prefix}/{route}"


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: Mapping[str, str]
) -> tuple[int, bytes]:
    try:
        async with http.post(url, data=body, headers=headers) as response:
            return response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, repr(exc).encode()


async def poll(
    http: aiohttp.ClientSession,
    side: Side,
    node: SimNode,
    tally: Tally,
    origin: float,
    limit: int = 1,
) -> list[dict[str, Any]]:
    """One ``/dispatch``; its latency counts from ``origin`` (the send, or the scheduled time)."""
    status, body = await post(http, side.url("dispatch"), node.dispatch_body(limit), node.headers)
    done = time.perf_counter()
    copies: list[dict[str, Any]] = orjson.loads(body)["asset"] if status == 200 else []
    if tally.counts(done):
        tally.polls += 1
        tally.assigned += len(copies)
    if tally.counts(origin):
        tally.empty += status == 204
        tally.poll_ms.append((done - origin) * 1000)
        if status not in (200, 204):
            tally.fail(f"dispatch {status}: {body.decode(errors='replace')}")
    return copies


async def report_copies(
    http: aiohttp.ClientSession,
    side: Side,
    node: SimNode,
    copies: Sequence[Mapping[str, Any]],
    tally: Tally,
) -> None:
    started = time.perf_counter()
    status, body = await post(
        http, side.url("assets-downloaded"), node.report_body(copies), node.headers
    )
    done = time.perf_counter()
    if tally.counts(started):
        tally.reports += 1
        tally.report_ms.append((done - started) * 1000)
        if status != 200 or orjson.loads(body).get("status") != "success":
            tally.fail(f"report {status}: {body.decode(errors='replace')}")


async def closed_loop(
    http: aiohttp.ClientSession,
    side: Side,
    nodes: Sequence[SimNode],
    plan: Plan,
    workload: Workload,
) -> Tally:
    """Every node polls (and reports) as soon as it may; ``plan.in_flight`` requests at once."""
    gate = asyncio.Semaphore(plan.in_flight)
    tally = Tally(time.perf_counter() + plan.warm_up_seconds, plan.seconds)
    end = tally.start + tally.seconds

    async def node_loop(node: SimNode) -> None:
        while time.perf_counter() < end:
            async with gate:
                copies = await poll(http, side, node, tally, time.perf_counter(), workload.limit)
            if workload.report and copies:
                async with gate:
                    await report_copies(http, side, node, copies, tally)

    await asyncio.gather(*(node_loop(node) for node in nodes))
    return tally


def polls_per_second(plan: Plan, workload: Workload) -> float:
    return plan.paced_rate * workload.rate_factor / workload.limit


async def paced(
    http: aiohttp.ClientSession,
    side: Side,
    nodes: Sequence[SimNode],
    plan: Plan,
    workload: Workload,
) -> Tally:
    """Every node polls once per period at its own phase; latency counts from the scheduled
    time, so a late answer, which delays the node's next poll, is not hidden by it. A poll
    not sent by PACED_GRACE_SECONDS after the window counts as waiting until then."""
    period = len(nodes) / polls_per_second(plan, workload)
    begin = time.perf_counter() + 0.1
    tally = Tally(begin + plan.warm_up_seconds, plan.seconds)
    end = tally.start + tally.seconds
    cutoff = end + PACED_GRACE_SECONDS
    rng = random.Random("fleet-phases")

    async def node_loop(node: SimNode, tick: float) -> None:
        while tick < end and time.perf_counter() < cutoff:
            await asyncio.sleep(max(0.0, tick - time.perf_counter()))
            copies = await poll(http, side, node, tally, tick, workload.limit)
            if workload.report and copies:
                await report_copies(http, side, node, copies, tally)
            tick += period
        while tick < end:  # never sent: the server fell too far behind
            if tally.counts(tick):
                tally.unsent += 1
                tally.poll_ms.append((cutoff - tick) * 1000)
            tick += period

    await asyncio.gather(*(node_loop(node, begin + rng.uniform(0, period)) for node in nodes))
    return tally


def client(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
    )


# Setting up -------------------------------------------------------------------------------


async def import_assets(
    http: aiohttp.ClientSession, base_url: str, assets: Sequence[dict[str, Any]]
) -> float:
    """POST the assets in batches of IMPORT_BATCH; the seconds it took."""
    started = time.perf_counter()
    for start in range(0, len(assets), IMPORT_BATCH):
        batch = orjson.dumps(assets[start : start + IMPORT_BATCH])
        status, body = await post(http, f"{base_url}{RESCUE}/assets", batch, ADMIN_JSON)
        if status != 201:
            raise RuntimeError(f"importing assets answered {status}: {body[:500]!r}")
    return time.perf_counter() - started


async def register(
    http: aiohttp.ClientSession, base_url: str, name: str, gb: float, max_in_flight: int
) -> SimNode:
    body = {
        "name": name,
        "description": "bench",
        "free_space_gb": gb,
        "max_in_flight": max_in_flight,
    }
    status, answer = await post(http, f"{base_url}{RESCUE}/nodes", orjson.dumps(body), ADMIN_JSON)
    if status != 201:
        raise RuntimeError(f"registering a node answered {status}: {answer[:500]!r}")
    created = orjson.loads(answer)
    return SimNode(created["node_id"], created["token"], gb)


async def register_fleet(http: aiohttp.ClientSession, base_url: str, count: int) -> list[SimNode]:
    """``count`` nodes, each with room for every copy it could be handed in a run."""
    rng = random.Random("fleet-nodes")
    sizes = [free_space_gb(rng) for _ in range(count)]
    gate = asyncio.Semaphore(REGISTER_CONCURRENCY)

    async def one(n: int) -> SimNode:
        async with gate:
            return await register(http, base_url, f"node-{n}", sizes[n], 1000)

    return list(await asyncio.gather(*(one(n) for n in range(count))))


def bare_nodes(nodes: Sequence[SimNode]) -> list[SimNode]:
    """The same fleet for the bare app, which knows no tokens."""
    return [SimNode(f"bare-{n}", "", node.free_space_gb) for n, node in enumerate(nodes)]


@dataclass
class Databases:
    """Fresh databases for one kind: SQLite files, or PostgreSQL schemas dropped at the end."""

    kind: str
    workdir: Path
    postgres_url: str
    schemas: list[str] = field(default_factory=list)

    def fresh(self, name: str) -> dict[str, str]:
        if self.kind == "sqlite":
            return {"DATABASE_URL": f"sqlite:///{self.workdir / f'{name}.db'}"}
        schema = SCHEMA_PREFIX + name
        with psycopg.connect(self.postgres_url, autocommit=True) as connection:
            identifier = sql.Identifier(schema)
            connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(identifier))
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(identifier))
        self.schemas.append(schema)
        return {"DATABASE_URL": self.postgres_url, "DATABASE_SCHEMA": schema}

    async def dispatch(self, name: str) -> dict[str, str]:
        """Settings for a migrated database (``dispatch serve`` migrates SQLite by itself)."""
        database = self.fresh(name)
        if self.kind == "postgresql":
            await migrate_dispatch(self.postgres_url, database["DATABASE_SCHEMA"])
        return database

    def analyze(self) -> None:
        """What autovacuum would do shortly after a bulk import, before the timed runs."""
        if self.kind != "postgresql":
            return
        with psycopg.connect(self.postgres_url, autocommit=True) as connection:
            tables = connection.execute(
                "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(%s)",
                [self.schemas],
            ).fetchall()
            for schema, table in tables:
                connection.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, table)))

    def drop_all(self) -> None:
        if self.kind == "postgresql" and self.schemas:
            with psycopg.connect(self.postgres_url, autocommit=True) as connection:
                for schema in self.schemas:
                    identifier = sql.Identifier(schema)
                    connection.execute(
                        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(identifier)
                    )
        self.schemas.clear()


def bare_spec(workdir: Path, database: Mapping[str, str]) -> ServerSpec:
    port = free_port()
    argv = [sys.executable, str(common.REPO_ROOT / "bench" / "bare_fleet.py"), "--port", str(port)]
    argv += ["--database-url", database["DATABASE_URL"]]
    if "DATABASE_SCHEMA" in database:
        argv += ["--schema", database["DATABASE_SCHEMA"]]
    return ServerSpec(argv, common.base_env(), workdir, port, workdir / "bare-fleet.log")


# Reassignment -----------------------------------------------------------------------------


async def drill(
    http: aiohttp.ClientSession, base_url: str, live: Sequence[SimNode], n: int, copies: int
) -> dict[str, float]:
    """A node takes ``copies`` copies (the whole pool), heart-beats once and falls silent;
    the live nodes poll every DRILL_POLL_SECONDS and report what they get at once."""
    side = Side("Dispatch", base_url, RESCUE)
    assets = [asset | {"replication_target": 1} for asset in make_assets(copies, f"drill{n}")]
    await import_assets(http, base_url, assets)
    dead = await register(http, base_url, f"dead-{n}", 1000.0, copies)
    tally = Tally(0.0, math.inf)
    taken = {copy["job_id"] for copy in await poll(http, side, dead, tally, 0.0, limit=copies)}
    if len(taken) != copies:
        raise RuntimeError(
            f"the silent node got {len(taken)} copies, not {copies}: {tally.first_failure}"
        )
    await asyncio.sleep(DRILL_HEARTBEAT_AFTER_SECONDS)
    last_contact = time.perf_counter()
    status, body = await post(
        http, f"{base_url}/api/v1/nodes/{dead.node_id}/heartbeat", b"{}", dead.headers
    )
    if status != 200:
        raise RuntimeError(f"the heartbeat answered {status}: {body[:500]!r}")
    handed: dict[int, float] = {}
    give_up = last_contact + DRILL_GIVE_UP_SECONDS

    async def live_loop(node: SimNode) -> None:
        while not taken <= handed.keys() and time.perf_counter() < give_up:
            got = await poll(http, side, node, tally, 0.0, limit=copies)
            arrived = time.perf_counter()
            for copy in got:
                if copy["job_id"] in taken:
                    handed.setdefault(copy["job_id"], arrived)
            if got:
                await report_copies(http, side, node, got, tally)
            await asyncio.sleep(DRILL_POLL_SECONDS)

    await asyncio.gather(*(live_loop(node) for node in live))
    if tally.failed or not taken <= handed.keys():
        raise RuntimeError(
            f"drill {n}: {len(handed)} of {copies} copies handed on; {tally.first_failure}"
        )
    return {
        "copies": copies,
        "first_handed_seconds": min(handed.values()) - last_contact,
        "all_handed_seconds": max(handed.values()) - last_contact,
    }


async def reassignment(databases: Databases, plan: Plan) -> dict[str, Any]:
    database = await databases.dispatch("drill")
    env = dispatch_env(database, **UNLIMITED, **DRILL_SETTINGS)
    with running_all([serve_spec(databases.workdir, "serve-drill.log", env)]) as (server,):
        async with client(16) as http:
            live = [
                await register(http, server.base_url, f"live-{n}", 1000.0, 1000)
                for n in range(DRILL_LIVE_NODES)
            ]
            drills = [
                await drill(http, server.base_url, live, n, plan.drill_copies)
                for n in range(plan.drills)
            ]
    return {
        "lease_seconds": DRILL_LEASE_SECONDS,
        "silent_seconds": DRILL_SILENT_SECONDS,
        "upkeep_seconds": DRILL_UPKEEP_SECONDS,
        "drills": drills,
    }


# One kind ---------------------------------------------------------------------------------


async def measure_kind(databases: Databases, plan: Plan) -> dict[str, Any]:
    assets = make_assets(plan.assets, "bench")
    dispatch_db = await databases.dispatch("dispatch")
    bare_db = databases.fresh("bare")
    # The same assets and more: the baseline hands copies out faster, and must not run dry.
    bare_assets = make_assets(plan.assets * BARE_POOL_FACTOR, "bench")
    await bare_fleet.prepare(
        bare_db["DATABASE_URL"], bare_db.get("DATABASE_SCHEMA"), bare_assets, REPLICAS
    )
    specs = [
        serve_spec(
            databases.workdir, "serve.log", dispatch_env(dispatch_db, **UNLIMITED, **LONG_LEASES)
        ),
        bare_spec(databases.workdir, bare_db),
    ]
    runs: dict[str, dict[str, Any]] = {}
    # The code the servers load now (the tree may change later), and when.
    measured = {
        "commit": measured_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with running_all(specs) as (server, bare):
        sides = (Side("dispatch", server.base_url, RESCUE), Side("bare", bare.base_url, ""))
        async with client(plan.in_flight * 2) as http:
            progress(f"{databases.kind}: importing {plan.assets:,} assets, {REPLICAS} copies each")
            import_seconds = await import_assets(http, server.base_url, assets)
            nodes = await register_fleet(http, server.base_url, plan.nodes)
            fleets = {"dispatch": nodes, "bare": bare_nodes(nodes)}
            databases.analyze()
            for workload in WORKLOADS:
                runs[workload.key] = {}
                for side in sides:
                    run = paced if workload.paced else closed_loop
                    tally = await run(http, side, fleets[side.name], plan, workload)
                    found = runs[workload.key][side.name] = tally.as_json()
                    progress(
                        f" {workload.label}, {side.name}: "
                        f"{found['assignments_per_second']:,.0f} copies/s, "
                        f"poll p99 {found['poll_p99_ms']:.1f} ms, failed {tally.failed}"
                    )
                    await asyncio.sleep(SETTLE_SECONDS)
        rss_mb = server.rss_mb()
    progress(f"{databases.kind}: reassignment drills")
    return {
        "measured": measured,
        "import": {
            "assets": plan.assets,
            "copies": plan.assets * REPLICAS,
            "seconds": import_seconds,
            "assets_per_second": plan.assets / import_seconds,
        },
        "runs": runs,
        "serve_rss_mb": rss_mb,
        "reassignment": await reassignment(databases, plan),
    }


# Tables -----------------------------------------------------------------------------------


def rows_for(kind: str, figures: dict[str, Any], plan: Plan) -> list[common.Row]:
    targets = kind == "postgresql"  # the targets are on PostgreSQL
    rows: list[common.Row] = []
    for workload in WORKLOADS:
        if workload.key not in figures["runs"]:  # figures saved before the workload existed
            continue
        ours, bare = (figures["runs"][workload.key][side] for side in ("dispatch", "bare"))
        load = (
            f"{polls_per_second(plan, workload):,.0f} polls/s"
            if workload.paced
            else f"{plan.in_flight} in flight"
        )
        label = f"{workload.label.capitalize()} ({load})"
        # The nodes poll for work: one copy per poll, as fast as answers come, then at
        # its rate; and, asking for five copies a poll, at its rate of assignments.
        rate_target = targets and workload.key in ("poll", "paced_batch")
        p99_target = targets and workload.key in ("paced", "paced_batch")
        missed = ("empty", "failed", "unsent")
        rows += [
            common.Row(
                f"{label}: copies assigned/s",
                ours["assignments_per_second"],
                bare["assignments_per_second"],
                0,
                f">= {ASSIGNMENTS_TARGET:,.0f}/s" if rate_target else "",
                ours["assignments_per_second"] >= ASSIGNMENTS_TARGET if rate_target else None,
            ),
            common.Row(f"{label}: poll p50 (ms)", ours["poll_p50_ms"], bare["poll_p50_ms"], 1),
            common.Row(
                f"{label}: poll p99 (ms)",
                ours["poll_p99_ms"],
                bare["poll_p99_ms"],
                1,
                f"<= {P99_TARGET_MS:.0f} ms, all served" if p99_target else "",
                ours["poll_p99_ms"] <= P99_TARGET_MS and not any(ours[m] for m in missed)
                if p99_target
                else None,
            ),
        ]
        if workload.report:
            rows.append(
                common.Row(
                    f"{label}: report p99 (ms)", ours["report_p99_ms"], bare["report_p99_ms"], 1
                )
            )
        rows.append(
            common.Row(
                f"{label}: polls empty, failed or unsent",
                sum(ours[m] for m in missed),
                sum(bare[m] for m in missed),
                0,
            )
        )
    drills = figures["reassignment"]
    worst = max(d["all_handed_seconds"] for d in drills["drills"])
    bound = drills["lease_seconds"] + drills["upkeep_seconds"]
    n, copies = len(drills["drills"]), drills["drills"][0]["copies"]
    return [
        *rows,
        common.Row(
            f"Silent node: {copies} copies all reassigned, after its last beat, worst of {n} (s)",
            worst,
            None,
            2,
            f"<= lease + reaper = {bound:g} s",
            worst <= bound,
        ),
        common.Row(
            f"Silent node: first copy reassigned, after its last beat, best of {n} (s)",
            min(d["first_handed_seconds"] for d in drills["drills"]),
            None,
            2,
        ),
        common.Row(
            f"Import, {IMPORT_BATCH:,} assets per request (assets/s, {REPLICAS} copies each)",
            figures["import"]["assets_per_second"],
            None,
            0,
        ),
        common.Row("dispatch serve RSS after the load (MB)", figures["serve_rss_mb"], None, 1),
    ]


HOW = """\
`bench/fleet.py` measures how fast Dispatch hands asset copies to many rescue nodes polling
over HTTP, and how soon the copies of a node that falls silent go to others. Reproduce with
`.venv/bin/python bench/fleet.py` (or `make bench`); `--quick` is a short smoke run,
`--only postgresql` measures PostgreSQL alone (SQLite keeps its last figures). It needs
PostgreSQL at `--postgres-url`, by default `{postgres_url}`, where each server gets a fresh
schema `{prefix}<name>` (dropped at the end); on SQLite each gets a fresh file. The targets
are the issue's, on PostgreSQL.

- **Servers.** `dispatch serve` with the embedded worker (its upkeep is the reaper),
  `LOG_LEVEL=WARNING`, rate limits too high to refuse anything, no daily cap per node, and
  leases and silence (`NODE_LEASE_SECONDS`, `NODE_SILENT_SECONDS`) of an hour, so no lease
  expires between workloads. Beside it, on the same core, the baseline
  `bench/bare_fleet.py`: plain FastAPI on the same uvicorn options and pool size, whose
  `POST /dispatch` is one `UPDATE … WHERE id IN (SELECT … WHERE state = 'available' AND
  size_mb <= free ORDER BY priority, id LIMIT n FOR UPDATE SKIP LOCKED) RETURNING …` on a
  table of copies, and whose `POST /assets-downloaded` marks the node's copies rescued: the
  least a dispatcher must do never to hand one copy out twice. It has no authentication,
  node registry, lease, heartbeat, in-flight or cumulative free-space limit, one-copy-per-node
  rule or attempt history, so the ratio is what those cost. Both servers are pinned to core 0,
  the load generator (this process) to core 1; PostgreSQL is not pinned.
- **Data.** {assets:,} assets in seed 004's shape (priorities 1-10, sizes log-normal around
  150 MB), imported through `POST /api/v1/rescue/assets` in requests of {batch:,} (the import
  row), {replicas} copies each: {copies:,} copies, enough that the pool never runs dry (the
  "polls empty" rows). The baseline's table holds copies of the same assets and of
  {more:,} more of the kind (it hands them out faster, and must not run dry). `ANALYZE` runs
  after the import, as autovacuum would shortly after. {nodes:,} nodes registered through
  `POST /api/v1/rescue/nodes` (not timed), their free space log-uniform between 5 GB and 2 TB.
- **Nodes** are asyncio tasks of one process sharing one aiohttp session. A poll is
  `POST /api/v1/rescue/dispatch` with the node's token, its free space and `"limit": 1` (5 in
  the last two workloads), so every assigned copy costs one request (or a fifth of one); a report is
  `POST /api/v1/rescue/assets-downloaded` with the copy's job id, lease token, URL, a magnet
  link and `SUCCESS`. The same requests go to the baseline. Each workload runs on Dispatch,
  then on the baseline; after {warm:g} s of warm-up, copies whose answer arrives within
  {seconds:g} s are counted, and the latency of the requests that start within them.
  - **Poll + report, closed loop**: each node polls, reports the copy it got, polls again,
    with at most {in_flight} requests in flight across the fleet (the others wait their turn,
    which is not counted in the latency). A node's steady state.
  - **Poll only, closed loop**: the same without reports (nodes keep their copies). The
    issue's throughput target is judged here.
  - **Poll only, paced**: each node polls every {period:g} s at a phase of its own, so the
    fleet offers {rate:,.0f} polls/s. Latency counts from the scheduled time, so a slow answer
    (which delays the node's next poll) is not hidden; a poll not sent {grace:g} s after the
    window counts as waiting until then. The issue's latency target is judged here:
    {rate:,.0f} assignments/s with p99 <= 100 ms.
  - **5 copies per poll, paced**: as the paced workload, with `"limit": 5` (as a node with
    free slots would ask; seed 004's dispatch answers a list of assets) and {batch_rate:,.0f}
    polls/s, that is {batch_copies:,.0f} copies/s offered, a fifth above the issue's
    {rate:,.0f} assignments/s: the issue's targets (>= {rate:,.0f} assignments/s, p99 <= 100
    ms) for nodes that ask for several copies at once.
  - **5 copies per poll, closed loop**: the same as fast as answers come (without a limit,
    Dispatch hands up to the node's `max_in_flight`).
- **Reassignment**: a server with `NODE_LEASE_SECONDS={lease:g}`, `NODE_SILENT_SECONDS={silent:g}`
  (both the minimum) and `QUEUE_UPKEEP_INTERVAL_SECONDS={upkeep:g}`; {live} live nodes poll every
  {poll:g} s and report what they get at once. In each of {drills} drill(s), {drill_copies} assets
  with one copy each are imported, a new node takes all of them, heart-beats once {beat:g} s later
  and then falls silent. The figure runs from that heartbeat's send until the last of its copies
  is in a live node's hands: the upkeep marks the node offline once it has been silent for
  `NODE_SILENT_SECONDS`, which expires its leases at once, and the same pass puts the copies
  back. The target is the lease plus the reaper period. The baseline has no leases: a node that
  dies keeps its copies for ever (—).

Ratios are Dispatch / baseline: above 1 is better for throughput, below 1 for latency.
"""


def render(saved: dict[str, Any], postgres_url: str) -> str:
    plan = Plan(**{k: v for k, v in saved["settings"].items() if k != "quick"})
    machine = saved["machine"]
    parts = [
        "## Fleet: nodes polling for copies, and reassignment (`bench/fleet.py`)",
        "",
        HOW.format(
            postgres_url=postgres_url,
            prefix=SCHEMA_PREFIX,
            assets=plan.assets,
            batch=IMPORT_BATCH,
            replicas=REPLICAS,
            copies=plan.assets * REPLICAS,
            more=plan.assets * (BARE_POOL_FACTOR - 1),
            nodes=plan.nodes,
            warm=plan.warm_up_seconds,
            seconds=plan.seconds,
            in_flight=plan.in_flight,
            period=plan.nodes / plan.paced_rate,
            rate=plan.paced_rate,
            batch_rate=polls_per_second(plan, PACED_BATCH),
            batch_copies=polls_per_second(plan, PACED_BATCH) * PACED_BATCH.limit,
            grace=PACED_GRACE_SECONDS,
            lease=DRILL_LEASE_SECONDS,
            silent=DRILL_SILENT_SECONDS,
            upkeep=DRILL_UPKEEP_SECONDS,
            live=DRILL_LIVE_NODES,
            poll=DRILL_POLL_SECONDS,
            drills=plan.drills,
            drill_copies=plan.drill_copies,
            beat=DRILL_HEARTBEAT_AFTER_SECONDS,
        ).rstrip(),
    ]
    for kind, rows in tables_for(saved).items():
        table = common.markdown_table(HEADER, [row.cells() for row in rows])
        heading = KIND_NAMES[kind] + (" (for information)" if kind == "sqlite" else "")
        parts += ["", f"### {heading}", "", table]
    run = "quick run, indicative only" if saved["settings"]["quick"] else "full run"
    when = ", ".join(
        f"{KIND_NAMES[kind]} {figures['measured']['date']} (commit {figures['measured']['commit']})"
        for kind, figures in saved["kinds"].items()
    )
    parts += [
        "",
        f"Last run ({run}) on {machine['cpu_count']} cores ({machine['cpu_model']}), Python "
        f"{machine['python']}, load average {machine['load_average_1m']} before it:",
        f"{when}.",
    ]
    return "\n".join(parts)


def tables_for(saved: dict[str, Any]) -> dict[str, list[common.Row]]:
    plan = Plan(**{k: v for k, v in saved["settings"].items() if k != "quick"})
    return {kind: rows_for(kind, figures, plan) for kind, figures in saved["kinds"].items()}


def publish(saved: dict[str, Any], postgres_url: str) -> dict[str, list[common.Row]]:
    """Summary rows into the results file, the section into docs/benchmarks.md."""
    tables = tables_for(saved)
    saved["summary"] = {kind: [row.as_json() for row in rows] for kind, rows in tables.items()}
    saved["all_targets_met"] = all(
        row.met for rows in tables.values() for row in rows if row.met is not None
    )
    common.write_results(BENCHMARK, saved)
    common.update_docs_section(BENCHMARK, render(saved, postgres_url))
    return tables


def measured_commit() -> str:
    """The commit under test, marked when src/ or migrations/ differ from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=common.REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "diff", "--quiet", "HEAD", "--", "src", "migrations"],
        cwd=common.REPO_ROOT,
        check=False,
    ).returncode
    return (head or "unknown") + (" with uncommitted changes" if changed else "")


def earlier_figures(settings: dict[str, Any]) -> dict[str, Any]:
    """The last run's figures per kind, if it ran the same plan (``--only`` keeps the other)."""
    path = common.RESULTS_DIR / f"{BENCHMARK}.json"
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text(encoding="utf-8"))
    if earlier.get("settings") != settings:
        return {}
    return {k: v for k, v in earlier["kinds"].items() if "measured" in v}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="Fewer assets and nodes, short runs")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--only",
        choices=tuple(KIND_NAMES),
        help="Measure one database; the other's figures stay from the last run of the same plan",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="Rewrite docs/benchmarks.md from bench/results/fleet.json without measuring",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        path = common.RESULTS_DIR / f"{BENCHMARK}.json"
        publish(json.loads(path.read_text(encoding="utf-8")), args.postgres_url)
        return 0
    common.exit_on_sigterm()
    for name in Settings.model_fields:
        os.environ.pop(name.upper(), None)
    common.warn_if_busy()
    machine = common.machine_info()  # before the run, so the load average is other processes'
    if LOAD_CPUS and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, LOAD_CPUS)  # the servers under test get the other core
    plan = QUICK if args.quick else FULL
    settings = asdict(plan) | {"quick": args.quick}
    kinds = [args.only] if args.only else list(KIND_NAMES)
    figures = earlier_figures(settings) if args.only else {}
    with tempfile.TemporaryDirectory(prefix="dispatch-bench-fleet-") as tmp:
        for kind in kinds:
            databases = Databases(kind, Path(tmp), args.postgres_url)
            try:
                figures[kind] = uvloop.run(measure_kind(databases, plan))
            finally:
                databases.drop_all()
    saved: dict[str, Any] = {
        "benchmark": BENCHMARK,
        "machine": machine,
        "settings": settings,
        "kinds": {kind: figures[kind] for kind in KIND_NAMES if kind in figures},
    }
    tables = publish(saved, args.postgres_url)
    for kind, rows in tables.items():
        print(f"\n{kind}\n" + common.markdown_table(HEADER, [row.cells() for row in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
