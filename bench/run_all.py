"""Run every benchmark under bench/, one after another (never in parallel: they share the CPUs).

A benchmark is a script in bench/ that assigns a module-level ``BENCHMARK`` name; helper
modules do not. Extra arguments (e.g. ``--quick``) are passed to each benchmark.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module: the repository root takes its place (runnable from anywhere).
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import exit_on_sigterm
from bench.serving import stop

BENCH_DIR = Path(__file__).resolve().parent
STOP_TIMEOUT_SECONDS = 30.0


def is_benchmark(path: Path) -> bool:
    """Whether ``path`` assigns ``BENCHMARK`` at module level (read, not imported)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "BENCHMARK" for t in targets):
                return True
    return False


def benchmarks() -> list[Path]:
    return [path for path in sorted(BENCH_DIR.glob("*.py")) if is_benchmark(path)]


def run_one(script: Path, argv: list[str]) -> int:
    """Run one benchmark; if we are stopped, stop it gently so it can clean up its servers."""
    process = subprocess.Popen([sys.executable, str(script), *argv])
    try:
        return process.wait()
    finally:
        if process.poll() is None:
            stop(process, timeout=STOP_TIMEOUT_SECONDS)


def main(argv: list[str]) -> int:
    exit_on_sigterm()
    failed: list[str] = []
    for script in benchmarks():
        print(f"==> {script.name}", flush=True)
        started = time.monotonic()
        code = run_one(script, argv)
        print(
            f"<== {script.name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True
        )
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
