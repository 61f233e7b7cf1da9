"""How the soak judges its samples, and the tables it prints and writes to the docs.

A metric is judged on the samples after the warm-up: the median of their first fifth
("early") against the median of their last fifth ("late"), and a least-squares slope over
all of them. Medians, so one busy sample cannot decide; the slope, so a steady creep that
the medians would round away still shows.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import Latency, markdown_table
from bench.soak_load import SYNC_ROTATION, Done

DATABASES = ("sqlite", "postgresql")
EDGE_FRACTION = 0.2  # early and late: the first and last fifth of the steady samples
RSS_TOLERANCE_PERCENT = 5.0
LATENCY_TOLERANCE_PERCENT = 20.0


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    tolerance: float  # the growth still called flat: % of early, or a count
    percent: bool = False
    resource: bool = True  # False: a trend shown beside the resources, not part of the verdict

    @property
    def threshold(self) -> str:
        if self.percent:
            return f"< {self.tolerance:g} %"
        return f"<= {self.tolerance:g}"


METRICS = (
    Metric("rss_mb", "RSS, MB (process tree)", RSS_TOLERANCE_PERCENT, percent=True),
    # Keep-alive sockets of the load's clients and of the delivery client come and go.
    Metric("fds", "open file descriptors", 3),
    Metric("threads", "threads", 1),
    Metric("db_connections", "database connections", 1),
    Metric(
        "ingest_p50_ms",
        "ingest p50 per window, ms",
        LATENCY_TOLERANCE_PERCENT,
        percent=True,
        resource=False,
    ),
)


@dataclass(frozen=True)
class Flatness:
    metric: str
    label: str
    early: float
    late: float
    growth: float
    growth_percent: float
    slope_per_minute: float
    minimum: float
    maximum: float
    threshold: str
    flat: bool
    resource: bool

    @property
    def verdict(self) -> str:
        return "flat" if self.flat else "**grows**"

    def as_json(self) -> dict[str, object]:
        return asdict(self) | {"verdict": "flat" if self.flat else "grows"}


def verdict(rows: Sequence[Mapping[str, Any]]) -> str:
    """One sentence: which resources stayed flat, how much RSS moved, the latency trend."""
    by_key = {row["metric"]: row for row in rows}
    grew = [row["label"] for row in rows if row["resource"] and row["verdict"] != "flat"]
    text = "every resource flat" if not grew else f"**grew: {', '.join(grew)}**"
    if rss := by_key.get("rss_mb"):
        text += f" (RSS {rss['growth']:+.1f} MB, {rss['growth_percent']:+.1f} %)"
    if latency := by_key.get("ingest_p50_ms"):
        trend = "flat" if latency["verdict"] == "flat" else "**grew**"
        text += (
            f"; ingest p50 {trend}, {latency['early']:.1f} to {latency['late']:.1f} ms "
            f"({latency['growth_percent']:+.0f} %)"
        )
    return text + "."


def steady(samples: Sequence[Mapping[str, Any]], warmup_seconds: float) -> list[Mapping[str, Any]]:
    """The samples taken under load after the warm-up."""
    return [s for s in samples if s["t"] >= warmup_seconds and s["phase"] == "load"]


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two distinct xs)."""
    if len(set(xs)) < 2:
        return 0.0
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    numerator = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    denominator = sum((x - mean_x) ** 2 for x in xs)
    return numerator / denominator


def judge(samples: Sequence[Mapping[str, Any]], warmup_seconds: float) -> list[Flatness]:
    """Each metric's early and late medians, growth, slope per minute and verdict."""
    kept = steady(samples, warmup_seconds)
    if len(kept) < 2:
        raise ValueError(f"{len(kept)} samples after the warm-up: too few to judge")
    edge = max(1, round(len(kept) * EDGE_FRACTION))
    minutes = [s["t"] / 60 for s in kept]
    found = []
    for metric in METRICS:
        values = [float(s[metric.key]) for s in kept]
        early = statistics.median(values[:edge])
        late = statistics.median(values[-edge:])
        growth = late - early
        percent = 100 * growth / early if early else 0.0
        flat = percent < metric.tolerance if metric.percent else growth <= metric.tolerance
        found.append(
            Flatness(
                metric.key,
                metric.label,
                early,
                late,
                growth,
                percent,
                slope(minutes, values),
                min(values),
                max(values),
                metric.threshold,
                flat,
                metric.resource,
            )
        )
    return found


FLATNESS_HEADER = [
    "metric",
    "early median",
    "late median",
    "growth",
    "growth %",
    "slope per min",
    "min - max",
    "flat if growth",
    "verdict",
]


def flatness_table(rows: Sequence[Mapping[str, Any]]) -> str:
    def number(value: float) -> str:
        return f"{value:,.1f}" if abs(value) < 100 or value != int(value) else f"{value:,.0f}"

    cells = [
        [
            row["label"],
            number(row["early"]),
            number(row["late"]),
            f"{row['growth']:+,.1f}",
            f"{row['growth_percent']:+.1f}",
            f"{row['slope_per_minute']:+,.2f}",
            f"{number(row['minimum'])} - {number(row['maximum'])}",
            row["threshold"],
            "flat" if row["verdict"] == "flat" else "**grows**",
        ]
        for row in rows
    ]
    return markdown_table(FLATNESS_HEADER, cells)


DOCS_WIDTH = 95


def reflow(text: str) -> str:
    """Wrap each paragraph and each ``- `` bullet of ``text`` to the docs' width."""
    blocks = []
    for block in text.strip().split("\n\n"):
        if block.startswith(("```", "|", "#")):
            blocks.append(block)
            continue
        items, current = [], ""
        for line in block.splitlines():
            if line.startswith("- ") and current:
                items.append(current)
                current = line
            else:
                current = f"{current} {line.strip()}" if current else line
        items.append(current)
        blocks.append(
            "\n".join(
                textwrap.fill(
                    item,
                    DOCS_WIDTH,
                    subsequent_indent="  " if item.startswith("- ") else "",
                    break_long_words=False,
                    break_on_hyphens=False,
                )
                for item in items
            )
        )
    return "\n\n".join(blocks)


MINUTES_HEADER = [
    "at",
    "RSS MB",
    "fds",
    "DB conns",
    "threads",
    "req/s",
    "ingest p50 ms",
    "ingest p99 ms",
    "accepted",
    "delivered",
    "events",
    "backlog",
    "DB size MB",
    "anon MB",
]


def minutes_table(rows: Sequence[Mapping[str, Any]]) -> str:
    cells = [
        [
            str(row["minute"]),
            f"{row['rss_mb']:.1f}",
            str(row["fds"]),
            str(row["db_connections"]),
            str(row["threads"]),
            f"{row['requests_per_second']:.1f}",
            f"{row['ingest_p50_ms']:.1f}",
            f"{row['ingest_p99_ms']:.1f}",
            f"{row['accepted']:,}",
            f"{row['delivered']:,}",
            f"{row['events']:,}",
            f"{row['backlog']:,}",
            f"{row['db_size_mb']:.1f}",
            "—" if row.get("anon_mb") is None else f"{row['anon_mb']:.1f}",
        ]
        for row in rows
    ]
    return markdown_table(MINUTES_HEADER, cells)


def percentile(values: Sequence[float], p: int) -> float:
    if not values:
        return 0.0
    return Latency(list(values), len(values), 1.0).percentile(p)


def rates(done: Sequence[Done], seconds: float) -> dict[str, Any]:
    """Per kind of request: how many, per second, p50 and p99 (ms) over the whole run."""
    found: dict[str, Any] = {}
    for kind in ("ingest", "listing", "sync"):
        ms = [d.ms for d in done if d.kind == kind]
        found[kind] = {
            "requests": len(ms),
            "per_second": len(ms) / seconds,
            "p50_ms": percentile(ms, 50),
            "p99_ms": percentile(ms, 99),
            "max_ms": max(ms, default=0.0),
        }
    return found


def minute_rows(
    samples: Sequence[Mapping[str, Any]], done: Sequence[Done], started: float, row_seconds: float
) -> list[dict[str, Any]]:
    """One row per ``row_seconds`` of load: resources at its end, what happened during it."""
    loaded = [s for s in samples if s["phase"] == "load"]
    if not loaded:
        return []
    rows = []
    previous: Mapping[str, Any] = loaded[0]
    for n in range(1, math.ceil(loaded[-1]["t"] / row_seconds - 0.01) + 1):
        inside = [s for s in loaded if (n - 1) * row_seconds < s["t"] <= n * row_seconds + 0.5]
        if not inside:
            continue
        last = inside[-1]
        window = [d for d in done if previous["t"] < d.at - started <= last["t"]]
        ingest = [d.ms for d in window if d.kind == "ingest"]
        span = last["t"] - previous["t"] or 1.0
        rows.append(
            {
                "minute": _clock(last["t"]),
                "rss_mb": last["rss_mb"],
                "fds": last["fds"],
                "db_connections": last["db_connections"],
                "threads": last["threads"],
                "requests_per_second": len(window) / span,
                "ingest_p50_ms": percentile(ingest, 50),
                "ingest_p99_ms": percentile(ingest, 99),
                "accepted": last["accepted"] - previous["accepted"],
                "delivered": last["delivered"] - previous["delivered"],
                "events": last["events"] - previous["events"],
                "backlog": last["accepted"] - last["delivered"],
                "db_size_mb": last["db_size_mb"],
                "anon_mb": last.get("anon_mb"),
            }
        )
        previous = last
    return rows


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def render_run(kind: str, run: Mapping[str, Any]) -> list[str]:
    settings, outcome, rates_ = run["settings"], run["outcome"], run["rates"]
    machine = run["machine"]
    minutes = settings["minutes"]
    kind_label = "SQLite (embedded default)" if kind == "sqlite" else "PostgreSQL"
    sync_states = outcome["sync_jobs"]["states"]
    succeeded = sum(states.get("succeeded", 0) for states in sync_states.values())
    changes = sum(outcome["sync_jobs"]["changes"].values())
    missing = sum(outcome["stream_missing_listings"].values())
    quick = " (quick run, indicative only)" if settings["quick"] else ""
    flat = verdict(run["flatness"])
    row_seconds = settings["row_seconds"]
    per = "minute" if row_seconds == 60 else f"{row_seconds:g} s"
    connections = (
        "database connections count the descriptors open on the database file itself"
        if kind == "sqlite"
        else "database connections are the server's connections to PostgreSQL"
    )
    postgres = settings.get("postgres") or {}
    server = (
        f" PostgreSQL {postgres['server_version'].split()[0]} with autovacuum "
        f"{postgres['autovacuum']}."
        if postgres
        else ""
    )
    summary = f"""\
Last run {machine["date"]}{quick}: {minutes:g} min of load, {machine["cpu_count"]} cores
({machine["cpu_model"]}), Python {machine["python"]}, load average
{machine["load_average_1m"]} before the run.{server} Verdict: {flat}

- **Ingest + deliveries**: {rates_["ingest"]["requests"]:,} tasks POSTed at
  {rates_["ingest"]["per_second"]:.1f}/s (p50 {rates_["ingest"]["p50_ms"]:.1f} ms, p99
  {rates_["ingest"]["p99_ms"]:.1f} ms); {outcome["accepted"]:,} accepted,
  {outcome["delivered"]:,} delivered, **{outcome["lost"]} lost**.
- **Scraping**: {outcome["syncs"]} syncs, {succeeded} succeeded; {changes:,} catalogue
  changes written.
- **Events**: {outcome["listings"]:,} listings ingested at
  {rates_["listing"]["per_second"]:.1f}/s (p50 {rates_["listing"]["p50_ms"]:.1f} ms, p99
  {rates_["listing"]["p99_ms"]:.1f} ms); {outcome["events_received"]:,} messages received
  by {len(outcome["events_per_stream"])} streams held open throughout; {missing} listings
  missing from a stream.
- **Failed requests**: {sum(outcome["errors"].values())}.
"""
    rows_note = (
        f"Per {per} of load (resources at its end; req/s counts every request the load sent; "
        f"backlog is accepted minus delivered so far; {connections}; anon MB is the RSS less "
        "its file-backed pages):"
    )
    return [
        f"### {kind_label}",
        "",
        reflow(summary),
        "",
        flatness_table(run["flatness"]),
        "",
        reflow(rows_note),
        "",
        minutes_table(run["rows"]),
    ]


INTRO = """\
## Soak: steady load for 10 minutes (`bench/soak.py`)

`bench/soak.py` starts `dispatch serve` (API, admin UI and the embedded worker) as an operator
would, in an empty directory with a minimal environment, and keeps four workloads running at
fixed rates for 10 minutes, all at once:

- **ingest + deliveries**: {tasks:g} gateway tasks/s POSTed with a client's token to one
  endpoint with two resources (failover order) on a local sink (`bench/gateway_sink.py`); at
  the end every accepted task must have reached the sink (after a drain of at most
  {drain:.0f} s);
- **scraping**: a provider sync (`POST /api/v1/providers/{{name}}/sync`) every
  {sync:g} s, in turn over {providers}, all served by the recorded stand-ins of
  `dispatch.demo.providers`; the Shopify and GOAT stand-ins' prices move by 10 % from one of
  their syncs to the next, so those scrapes write changes (and price-drop events);
- **the live stream**: {streams} server-sent-events clients on `GET /api/v1/stream/events`
  ({users} watch users with their own keys, and the admin key), held open the whole run;
- **events**: {listings:g} new listings/s through `POST /api/v1/dev/listings/ingest`, each
  matching a rule of every user (each user also watches the scraped products), so every
  listing reaches every stream.

Its environment names the database and the stand-ins (URLs, made-up credentials) and sets
`LOG_LEVEL=WARNING`, `GATEWAY_ALLOWED_NETWORKS=127.0.0.0/8` (the sink is on loopback), rate
limits above the load's rates (one key sends it all), circuit breakers that never open (the
gateway benchmark's settings) and `WATCH_EVENT_COOLDOWN_SECONDS=0` (so every price change may
become an event); everything else is the default, e.g. the embedded
worker's `WORKER_CONCURRENCY=4` and a pool of `DB_POOL_SIZE=10`.

Every {sample:g} s the `dispatch serve` process tree is sampled with psutil: resident memory,
open file descriptors, threads, and database connections (SQLite: descriptors open on the
database file itself, one per connection, which also holds one on the `-wal`; PostgreSQL: the
server's TCP connections to the database, each checked against `pg_stat_activity`). After a
{warmup:.0f} s warm-up, a metric's **early** value is the median of the first fifth of the
samples and its **late** value the median of the last fifth; the slope is a least-squares fit
over all of them. RSS is called flat when it grew less than {rss:g} %, descriptors, threads and
database connections when they grew by no more than a small constant (keep-alive sockets come
and go). The load runs on core 1 beside the sink and the stand-ins; `dispatch serve` is pinned
to core 0. A run fails (exit 1) only when the load does: the server exits, a request fails, a
task is lost or a stream misses a listing.

Reproduce with (`--minutes N` changes the length, `--quick` is a one-minute smoke run):

```
.venv/bin/python bench/soak.py                          # SQLite, the embedded default
.venv/bin/python bench/soak.py --database postgresql    # PostgreSQL
```

On PostgreSQL the run gets a fresh schema `{schema}` at `--postgres-url` (by default
`{postgres}`), dropped afterwards. Each database keeps its own figures in
`bench/results/soak.json`.
"""

NOTES = """\
Notes:

- **What 10 minutes can tell.** A run serves about 17,000 requests, 15,000 deliveries, 1,200
  listings and 10,000 stream messages: a leak per request, task, listing or message would
  show as MB per minute. A creep of a few MB an hour is below what it can tell from noise:
  read the slope column for that.
- **A one-off step near the 2-minute mark**, on both databases (RSS +6 MB between 2:00 and
  3:00, then flat on PostgreSQL): an allocation made once, not growth with the load; its
  cause is not identified.
- **SQLite's RSS grows while its database does, then levels off.** The likely reason (not
  measured inside the process): SQLite keeps a page cache in each connection, up to 2 MB with
  its default `cache_size`, which fills as the file grows (here from about 17 to 65 MB), so up
  to 10-12 MB for the 5-6 connections the pool holds open. PostgreSQL keeps its pages in its
  own server, and there `dispatch serve` grew by 1 MB. A 20-minute SQLite run on 2026-12-07
  (`--minutes 20`, not in the tables) levelled off at 172-173 MB from minute 11 to minute 20
  while the database grew from 72 to 121 MB: RSS +3.4 MB (+2.0 %) early to late, slope +0.29
  MB/min, fds, threads and connections flat, 30,001 of 30,001 tasks delivered.
- **The PostgreSQL server here runs with autovacuum off** (`SHOW autovacuum`), so the rows the
  queue and the gateway update leave dead tuples that nothing vacuums or analyses during the
  run. That is the likely reason the ingest latency creeps up on PostgreSQL and not on SQLite
  (not verified here: it needs a server with autovacuum on). A production server runs it.
- The catalogue and the queue's history grow during the run (listings, changes, finished
  jobs): the database files grow with them (the DB size column), the server's memory should
  not.
"""


def render(
    saved: Mapping[str, Any], *, drain_seconds: float, schema: str, postgres_url: str
) -> str:
    """The docs section: what the soak does, then each database's last run."""
    runs: Mapping[str, Any] = saved["runs"]
    any_run = next(iter(runs.values()))
    settings = any_run["settings"]
    pace = settings["pace"]
    parts = [
        reflow(
            INTRO.format(
                tasks=pace["tasks_per_second"],
                drain=drain_seconds,
                sync=pace["sync_every_seconds"],
                providers=", ".join(f"`{name}`" for name in SYNC_ROTATION),
                streams=pace["users"] + 1,
                users=pace["users"],
                listings=pace["listings_per_second"],
                sample=settings["sample_seconds"],
                warmup=settings["warmup_seconds"],
                rss=RSS_TOLERANCE_PERCENT,
                schema=schema,
                postgres=postgres_url,
            )
        )
    ]
    for kind in DATABASES:
        if kind in runs:
            parts += ["", *render_run(kind, runs[kind])]
    parts += ["", reflow(NOTES)]
    return "\n".join(parts)
