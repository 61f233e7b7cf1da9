"""HTTP load with ``wrk``: install it if missing, run it, parse its ``--latency`` report."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.serving import LOAD_CPUS, pin_to

THREADS = 1  # wrk has a core of its own (see serving.LOAD_CPUS); one thread fills it
CONNECTIONS = 32

_UNIT_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_P50 = re.compile(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s+(\d+) requests in", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


class LoadError(RuntimeError):
    """wrk is missing and cannot be installed, failed, or saw error responses."""


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p99_ms: float
    requests: int
    socket_errors: int
    p50_ms: float
    non_2xx: int = 0  # only with ``allow_errors``; otherwise error responses are fatal

    @property
    def successes_per_second(self) -> float:
        """Requests/sec counting only 2xx answers (wrk's figure counts every answer)."""
        if self.requests == 0:
            return 0.0
        return self.requests_per_second * (self.requests - self.non_2xx) / self.requests

    def as_json(self) -> dict[str, float | int]:
        return asdict(self)


def ensure_wrk() -> str:
    """Path to ``wrk``, installing the Debian package when it is missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise LoadError("wrk is not installed; install it with `sudo apt-get install -y wrk`")
    install = ["apt-get", "install", "-y", "wrk"]
    # A fresh machine may have no package lists yet, so retry once after an update.
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for steps in ([install], [["apt-get", "update"], install]):
        print("installing wrk:", " && ".join(" ".join(step) for step in steps), file=sys.stderr)
        for step in steps:
            subprocess.run(step, check=False, capture_output=True, env=env)
        found = shutil.which("wrk")
        if found:
            return found
    raise LoadError("wrk is not installed and `apt-get install -y wrk` failed; install it by hand")


def run_wrk(
    url: str,
    seconds: int,
    headers: Mapping[str, str] | None = None,
    *,
    connections: int = CONNECTIONS,
    script: Path | None = None,
    timeout_seconds: int | None = None,
    allow_errors: bool = False,
) -> LoadResult:
    """One wrk run at the fixed thread count; error responses are fatal unless allowed.

    ``script`` is a wrk Lua script, e.g. one that turns the requests into POSTs with a body;
    ``timeout_seconds`` replaces wrk's 2 s, past which a request counts as a socket error
    and is left out of the latencies.
    """
    argv = [ensure_wrk(), f"-t{THREADS}", f"-c{connections}", f"-d{seconds}s"]
    argv.append("--latency")
    if timeout_seconds is not None:
        argv.append(f"--timeout={timeout_seconds}s")
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    if script is not None:
        argv += ["-s", str(script)]
    done = subprocess.run(
        [*argv, url], check=False, capture_output=True, text=True, preexec_fn=pin_to(LOAD_CPUS)
    )
    if done.returncode != 0:
        raise LoadError(f"wrk failed on {url}: {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout, url, allow_errors=allow_errors)


def parse_wrk(report: str, url: str, *, allow_errors: bool = False) -> LoadResult:
    """Requests/sec and the 50th and 99th percentiles (in ms) from a ``wrk --latency`` report."""
    rate, total = _RATE.search(report), _TOTAL.search(report)
    p50, p99 = _P50.search(report), _P99.search(report)
    if rate is None or p50 is None or p99 is None or total is None:
        raise LoadError(f"cannot parse the wrk report for {url}:\n{report}")
    non_2xx = _NON_2XX.search(report)
    if non_2xx is not None and not allow_errors:
        # A refused or failing request is cheap; counting it would flatter the server.
        raise LoadError(f"{url} answered {non_2xx.group(1)} non-2xx responses:\n{report}")
    errors = _SOCKET_ERRORS.search(report)
    socket_errors = sum(int(n) for n in errors.groups()) if errors else 0
    return LoadResult(
        requests_per_second=float(rate.group(1)),
        p99_ms=float(p99.group(1)) * _UNIT_TO_MS[p99.group(2)],
        requests=int(total.group(1)),
        socket_errors=socket_errors,
        p50_ms=float(p50.group(1)) * _UNIT_TO_MS[p50.group(2)],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )
