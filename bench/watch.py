"""Watch benchmark: 10,000 rules against batches of 1,000 changes, and change-to-stream latency.

Evaluation runs in the benchmark's process on SQLite and on PostgreSQL: with 10,000 active
rules of 1,000 users, batches of 1,000 changed listings (new ones, then the same ones
cheaper) are written through the catalogue's writer and ``Evaluator.run_once()`` is timed
on each, events and notifications written; seed 003's way of matching (every rule tested
against every listing) over the same listings and rules is the baseline. The live stream
runs a real ``dispatch serve``: single listings written here at a steady rate, their
messages read from ``GET /api/v1/stream/events``, with the embedded worker and, on
PostgreSQL, with a separate ``dispatch worker`` (LISTEN/NOTIFY, and Redis when reachable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
import redis
from bench import common, watch_evaluate, watch_stream
from bench.serving import LOAD_CPUS
from bench.watch_evaluate import BATCH, Workload, seed_rules
from bench.watch_stream import Deployment
from psycopg import sql

from dispatch.config import Settings, load_settings
from dispatch.db import migrations
from dispatch.db.engine import Database
from dispatch.telemetry.logging import configure_logging
from dispatch.watch import evaluate

BENCHMARK = "watch"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SCHEMA = "bench_watch"
BATCH_TARGET_SECONDS = 1.0
STREAM_P99_TARGET_MS = 500.0
HEADER = ["metric", "Dispatch", "baseline", "ratio", "target", "met"]


@dataclass(frozen=True)
class Plan:
    users: int
    rules: int
    new_batches: int
    price_batches: int
    baseline_listings: int
    stream_rate: float  # listings written per second
    stream_seconds: float

    @property
    def workload(self) -> Workload:
        return Workload(
            self.users, self.rules, self.new_batches, self.price_batches, self.baseline_listings
        )


FULL = Plan(1_000, 10_000, 5, 5, 1_000, 20.0, 30.0)
QUICK = Plan(1_000, 10_000, 2, 2, 100, 20.0, 5.0)


@dataclass
class Storage:
    """A fresh database per phase: a SQLite file, or the PostgreSQL schema recreated."""

    kind: str
    workdir: Path
    postgres_url: str

    async def fresh(self, name: str) -> tuple[Settings, dict[str, str]]:
        """Settings for an empty, migrated database, and the same as server environment."""
        if self.kind == "sqlite":
            env = {"DATABASE_URL": f"sqlite:///{self.workdir / f'{name}.db'}"}
        else:
            self.drop()
            with psycopg.connect(self.postgres_url, autocommit=True) as connection:
                connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
            env = {"DATABASE_URL": self.postgres_url, "DATABASE_SCHEMA": SCHEMA}
        settings = load_settings(
            None,
            database_url=env["DATABASE_URL"],
            database_schema=env.get("DATABASE_SCHEMA"),
        )
        database = Database(settings)
        try:
            await migrations.upgrade(database)
        finally:
            await database.dispose()
        return settings, env

    def drop(self) -> None:
        if self.kind == "postgresql":
            with psycopg.connect(self.postgres_url, autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA))
                )


def deployments(kind: str, redis_url: str | None) -> list[Deployment]:
    if kind == "sqlite":
        return [Deployment("embedded", separate_worker=False)]
    found = [
        Deployment("embedded", separate_worker=False),
        Deployment("worker", separate_worker=True),
    ]
    if redis_url:
        found.append(Deployment("worker-redis", separate_worker=True, redis_url=redis_url))
    return found


async def measure_kind(
    kind: str, plan: Plan, storage: Storage, redis_url: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The evaluation workload, then the stream under each deployment, each on a fresh database."""
    common.report(f"{kind}: evaluation, {plan.rules:,} rules, batches of {BATCH:,} changes")
    settings, _ = await storage.fresh("evaluation")
    database = Database(settings)
    try:
        evaluation = await watch_evaluate.measure(database, settings, plan.workload, common.report)
    finally:
        await database.dispose()
    streams: dict[str, Any] = {}
    for deployment in deployments(kind, redis_url):
        settings, env = await storage.fresh(f"stream-{deployment.name}")
        database = Database(settings)
        try:
            await seed_rules(database, plan.users, plan.rules, probe=True)
            streams[deployment.name] = await watch_stream.measure(
                deployment,
                env,
                storage.workdir,
                database,
                storage.postgres_url,
                plan.stream_rate,
                plan.stream_seconds,
                common.report,
            )
        finally:
            await database.dispose()
    return evaluation, streams


def evaluation_rows(evaluation: dict[str, Any]) -> list[common.Row]:
    found = watch_evaluate.summary(evaluation)
    naive = evaluation["naive_seconds_per_batch"]
    size = f"{BATCH:,} changes x {evaluation['rules']:,} rules"
    rows = [
        common.Row(
            f"first batch of a process ({found['cold_kind']}; rules compiled first), s",
            found["cold_seconds"],
            None,
            3,
        )
    ]
    for kind, label in (("new", "new listings"), ("price", "price changes")):
        if kind not in found:
            continue
        figures = found[kind]
        for stat in ("p50", "max"):
            seconds = figures[f"{stat}_seconds"]
            rows.append(
                common.Row(
                    f"{label}: batch of {size}, events written, s, {stat}",
                    seconds,
                    naive,
                    3,
                    f"<= {BATCH_TARGET_SECONDS:.1f}",
                    seconds <= BATCH_TARGET_SECONDS,
                )
            )
        rows.append(common.Row(f"{label}: changes/s", figures["changes_per_second"], None, 0))
        rows.append(
            common.Row(f"{label}: matches per batch", figures["matches_per_batch"], None, 0)
        )
        rows.append(common.Row(f"{label}: events per batch", figures["events_per_batch"], None, 0))
    rows.append(
        common.Row(
            "rules compiled and indexed (load_rules), s", evaluation["compile_seconds"], None, 3
        )
    )
    rows.append(
        common.Row(
            f"matching alone, {size}: rule index vs every pair, s",
            evaluation["index_seconds_per_batch"],
            naive,
            3,
        )
    )
    return rows


def stream_rows(streams: dict[str, Any]) -> list[common.Row]:
    rows: list[common.Row] = []
    for run in streams.values():
        where = run["deployment"]
        p99, lost = run["p99_ms"], run["lost"]
        rows += [
            common.Row(f"change-to-stream p50, ms ({where})", run["p50_ms"], None, 0),
            common.Row(f"change-to-stream p95, ms ({where})", run["p95_ms"], None, 0),
            common.Row(
                f"change-to-stream p99, ms ({where})",
                p99,
                None,
                0,
                f"<= {STREAM_P99_TARGET_MS:.0f}, none lost",
                p99 <= STREAM_P99_TARGET_MS and lost == 0,
            ),
            common.Row(f"messages lost of {run['writes']:,} writes ({where})", lost, None, 0),
            common.Row(
                f"dispatch serve RSS after the run, MB ({where})", run["serve_rss_mb"], None, 1
            ),
        ]
        if "worker_rss_mb" in run:
            rows.append(
                common.Row(
                    f"dispatch worker RSS after the run, MB ({where})",
                    run["worker_rss_mb"],
                    None,
                    1,
                )
            )
    return rows


def tables_for(saved: dict[str, Any]) -> dict[str, list[common.Row]]:
    return {
        kind: evaluation_rows(saved["evaluation"][kind]) + stream_rows(saved["stream"][kind])
        for kind in saved["evaluation"]
    }


HOW = """\
How each workload is measured:

- **Data.** {users:,} users with {rules:,} active rules between them (10 each), drawn from
  the catalogue benchmark's vocabulary (brands, models, colours, categories) in six shapes:
  a model in a colour under a price; a brand's model at one provider under a price; a
  quoted brand and model minus a colour between two prices; a brand's colour in two sizes;
  a style code; a category, model and colour. Notification settings vary (defaults, a
  drop threshold, price rises, lowest in 30 days, no new-match alerts). Listings are titled
  from the same vocabulary (skewed, as in a real catalogue) at three US-dollar providers,
  one offer (a size) each, so a listing written is one catalogue change.
- **Evaluation**, in the benchmark's process (pinned to core 1; PostgreSQL is not pinned), on
  a fresh database: {new} batches of {batch:,} new listings, then {price} batches where the
  same listings are {drop}% cheaper, each written through `store.upsert_products` (one call
  per provider, not timed) and then evaluated by one timed `Evaluator.run_once()`: it reads
  the {batch:,} changes after its cursor, loads the listings, matches them through the rule
  index, decides the events and writes matches, events and notifications (the in-app feed
  and any pending outbound channel) in one transaction, then publishes the stream messages.
  The first batch of the process also compiles and indexes every rule: it is reported on its
  own row, and the p50 and max rows are the other batches. `load_rules` alone is timed from
  scratch afterwards.
- **Baseline: seed 003's matching**, every rule tested against every listing
  (`matching.match` per pair) over {baseline:,} of the last batch's listings (as the
  evaluator loads them) and the same compiled rules; matching alone, no reads or writes,
  scaled to {batch:,} listings (it is linear in them). Its match count is checked against
  the rule index's on the same listings. The last row sets the rule index's matching alone
  against it.
- **Change-to-stream latency**: `dispatch serve` (pinned to core 0, `LOG_LEVEL=WARNING`, rate
  limits out of the way) on a fresh database with the same users and rules plus one probe
  rule; one `GET /api/v1/stream/events` connection with the admin key (every user's
  notifications) read by a thread of the benchmark's process. After a warm-up (writes until
  {warm} in a row arrive: rules compiled, relay listening), one new listing matching the
  probe rule is written every {interval:g} ms for {seconds:g} s through
  `store.upsert_products`, its time taken just before the commit; the latency is the first
  message for that listing (`listing_id`) minus that time, on one clock. A write with no
  message {grace:g} s after the last write counts as lost. The evaluator polls the feed
  every {poll:g} s. Deployments: the embedded worker; on PostgreSQL also the API with
  `WORKER_ENABLED=false` and one `dispatch worker` (also pinned to core 0), the message
  crossing processes through LISTEN/NOTIFY and, when Redis answers, through Redis.
"""

NOTES = """\
Notes:

- **Where a batch's time goes.** Matching is the `matching alone` row: rules are filed
  under the word of theirs that the fewest rules need (or their brand, or their provider),
  grouped by the words they need, and one subset test of a group's words against the
  listing's word prefixes keeps or drops the whole group before any rule is matched clause
  by clause, so a listing meets a few dozen rules, not 10,000. The rest is reading the
  changes and the listings (their columns, not their raw payloads), the pairs' stored
  states, and writing matches, events (after one read of which dedupe keys exist; plain
  inserts, COPY on PostgreSQL) and their notifications (the feed and a pending email each).
- **The first batch of a process** also compiles and indexes every active rule (the
  `load_rules` row). Afterwards a rule or user change recompiles only the rules it touched.
- **The stream** is fed after the batch's commit: in the process on SQLite, by
  `pg_notify` inside the writing transaction on PostgreSQL, by `PUBLISH` after it with Redis.
  Its latency is mostly the evaluator's poll interval (a change waits up to 0.2 s before it
  is read) plus one small batch's evaluation.
- **The peers** named in the issue (changedetection.io, Huginn) cannot run here (no Docker,
  no internet); the baseline is seed 003's own way of matching, every rule against every
  listing, on the same rules and listings.
"""


def render(
    tables: dict[str, list[common.Row]],
    machine: dict[str, Any],
    plan: Plan,
    postgres_url: str,
    *,
    quick: bool,
) -> str:
    run = "quick run, indicative only" if quick else "full run"
    parts = [
        "## Watch: rule evaluation and the live stream (`bench/watch.py`)",
        "",
        "`bench/watch.py` measures how fast changed listings are evaluated against many rules,",
        "and how soon a change reaches the live stream, on SQLite and on PostgreSQL. Reproduce",
        "with `.venv/bin/python bench/watch.py` (or `make bench`); `--quick` is a short smoke",
        f"run. It needs PostgreSQL at `--postgres-url`, by default `{postgres_url}`, where each",
        f"phase gets a fresh schema `{SCHEMA}` (dropped at the end); on SQLite each phase gets",
        "a fresh file. Ratio is Dispatch / baseline.",
        "",
        HOW.format(
            users=plan.users,
            rules=plan.rules,
            new=plan.new_batches,
            price=plan.price_batches,
            batch=BATCH,
            drop=watch_evaluate.PRICE_DROP_PERCENT,
            baseline=plan.baseline_listings,
            warm=watch_stream.WARM_UP_ARRIVALS,
            interval=1000 / plan.stream_rate,
            seconds=plan.stream_seconds,
            grace=watch_stream.GRACE_SECONDS,
            poll=evaluate.POLL_SECONDS,
        ).rstrip(),
    ]
    for kind, rows in tables.items():
        parts += ["", f"### {kind}", "", common.markdown_table(HEADER, [r.cells() for r in rows])]
    parts += [
        "",
        f"Last run {machine['date']} ({run}): {machine['cpu_count']} cores "
        f"({machine['cpu_model']}), Python {machine['python']}, load average "
        f"{machine['load_average_1m']} before the run.",
        "",
        NOTES.rstrip(),
    ]
    return "\n".join(parts)


def publish(saved: dict[str, Any], postgres_url: str) -> dict[str, list[common.Row]]:
    """Summary rows into the results file, the section into docs/benchmarks.md."""
    settings = saved["settings"]
    plan = Plan(**{k: v for k, v in settings.items() if k != "quick"})
    tables = tables_for(saved)
    saved["summary"] = {kind: [row.as_json() for row in rows] for kind, rows in tables.items()}
    saved["all_targets_met"] = all(
        row.met for rows in tables.values() for row in rows if row.met is not None
    )
    common.write_results(BENCHMARK, saved)
    common.update_docs_section(
        BENCHMARK, render(tables, saved["machine"], plan, postgres_url, quick=settings["quick"])
    )
    return tables


def render_saved(postgres_url: str) -> int:
    """Tables and notes again from the last run's figures (after a change to this script)."""
    saved = json.loads((common.RESULTS_DIR / f"{BENCHMARK}.json").read_text(encoding="utf-8"))
    publish(saved, postgres_url)
    return 0


def reachable_redis(url: str) -> str | None:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        common.report(f"{BENCHMARK}: Redis at {url} does not answer ({exc}); no Redis run")
        return None
    return url


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="Fewer batches, a short stream run")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="'' skips the Redis run")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="Rewrite docs/benchmarks.md from bench/results/watch.json without measuring",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        return render_saved(args.postgres_url)
    common.exit_on_sigterm()
    for name in Settings.model_fields:
        os.environ.pop(name.upper(), None)
    configure_logging("WARNING", "console")
    common.warn_if_busy()
    machine = common.machine_info()  # before the run, so the load average is other processes'
    if LOAD_CPUS and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, LOAD_CPUS)  # the servers under test get the other core
    plan = QUICK if args.quick else FULL
    kinds = [args.only] if args.only else ["sqlite", "postgresql"]
    redis_url = reachable_redis(args.redis_url) if args.redis_url else None
    evaluation: dict[str, Any] = {}
    streams: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dispatch-bench-watch-") as tmp:
        for kind in kinds:
            storage = Storage(kind, Path(tmp), args.postgres_url)
            try:
                evaluation[kind], streams[kind] = asyncio.run(
                    measure_kind(kind, plan, storage, redis_url)
                )
            finally:
                storage.drop()
    saved: dict[str, Any] = {
        "benchmark": BENCHMARK,
        "machine": machine,
        "settings": asdict(plan) | {"quick": args.quick},
        "evaluation": evaluation,
        "stream": streams,
    }
    tables = publish(saved, args.postgres_url)
    for kind, rows in tables.items():
        print(f"\n{kind}\n" + common.markdown_table(HEADER, [r.cells() for r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
