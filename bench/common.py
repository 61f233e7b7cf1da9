"""What every benchmark shares: machine facts, results files and the docs table."""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
DOCS_FILE = REPO_ROOT / "docs" / "benchmarks.md"

DOCS_INTRO = """# Benchmarks

Each capability has a benchmark under `bench/`. Run them all with `make bench`, or one alone,
e.g. `.venv/bin/python bench/foundation.py` (`--quick` for a short smoke run). Every run
writes its figures to `bench/results/<name>.json` and rewrites its section below.

The figures below come from a 2-core machine; the load generator (`wrk`) shares those cores with
the server under test, so compare the columns of one table rather than absolute numbers across
machines.
"""


def machine_info() -> dict[str, object]:
    """The facts a reader needs to judge whether two runs are comparable."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def warn_if_busy(threshold: float = 1.0) -> None:
    """Say so when other work is using the CPUs: the figures would be noise."""
    load = os.getloadavg()[0]
    if load > threshold:
        print(
            f"warning: 1-minute load average is {load:.2f} before the benchmark starts; "
            "other processes will skew the figures",
            file=sys.stderr,
        )


def _cpu_model() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def base_env() -> dict[str, str]:
    """A minimal environment, so the developer's own DATABASE_URL or REDIS_URL cannot leak in."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {name: os.environ[name] for name in keep if name in os.environ}


def report(message: str) -> None:
    """Progress for the person running a benchmark, on stderr (stdout may be a table)."""
    print(message, file=sys.stderr, flush=True)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks stop servers and remove temp dirs."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handle)


def write_results(name: str, payload: Mapping[str, object]) -> Path:
    """Write ``bench/results/<name>.json`` atomically, so a killed run leaves the old file."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    target = RESULTS_DIR / f"{name}.json"
    temporary = target.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    temporary.replace(target)
    return target


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table whose columns line up in plain text too."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return (
            "| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)) + " |"
        )

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def update_docs_section(name: str, body: str) -> Path:
    """Replace the ``bench:<name>`` section of docs/benchmarks.md, creating what is missing."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    section = f"{start}\n{body.strip()}\n{end}"
    text = DOCS_FILE.read_text(encoding="utf-8") if DOCS_FILE.exists() else DOCS_INTRO
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOCS_FILE.parent.mkdir(parents=True, exist_ok=True)
    DOCS_FILE.write_text(text, encoding="utf-8")
    return DOCS_FILE


@dataclass(frozen=True)
class Row:
    """One line of a table comparing Dispatch with a baseline; ratio is Dispatch / baseline."""

    metric: str
    ours: float
    baseline: float | None = None
    decimals: int = 2
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.ours / self.baseline

    def cells(self) -> list[str]:
        def number(value: float | None, decimals: int) -> str:
            return "—" if value is None else f"{value:,.{decimals}f}"

        met = {None: "—", True: "yes", False: "**no**"}[self.met]
        return [
            self.metric,
            number(self.ours, self.decimals),
            number(self.baseline, self.decimals),
            number(self.ratio, 2),
            self.target or "—",
            met,
        ]

    def as_json(self) -> dict[str, object]:
        figures = {key: value for key, value in asdict(self).items() if key != "decimals"}
        return figures | {"ratio": self.ratio}


@dataclass(frozen=True)
class Latency:
    """Latencies of a paced run in milliseconds: enqueue-to-start, or POST-to-delivery."""

    samples_ms: list[float]
    produced: int
    produce_seconds: float

    def percentile(self, p: int) -> float:
        if len(self.samples_ms) < 2:
            return self.samples_ms[0] if self.samples_ms else float("nan")
        return statistics.quantiles(self.samples_ms, n=100, method="inclusive")[p - 1]

    def as_json(self) -> dict[str, object]:
        return {
            "jobs": self.produced,
            "enqueue_rate": self.produced / self.produce_seconds,
            "p50_ms": self.percentile(50),
            "p95_ms": self.percentile(95),
            "p99_ms": self.percentile(99),
            "max_ms": max(self.samples_ms),
        }
