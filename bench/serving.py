"""Start a server under test, time it until ``/health`` answers, measure it, stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

POLL_INTERVAL_SECONDS = 0.01
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
_LOG_TAIL_CHARS = 4000
# On a machine with two or more cores the server under test gets core 0 and the load
# generator core 1, so they never compete for a core and runs vary less.
_CORES = os.cpu_count() or 1
SERVER_CPUS: set[int] = {0} if _CORES >= 2 else set()
LOAD_CPUS: set[int] = {1} if _CORES >= 2 else set()


class ServerFailed(RuntimeError):
    """The server exited or never became healthy; the message carries its log tail."""


@dataclass(frozen=True)
class ServerSpec:
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    port: int
    log_path: Path
    cpus: frozenset[int] | None = None  # None: SERVER_CPUS, the server-under-test's core

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    ready_seconds: float

    def rss_mb(self) -> float:
        """Resident memory (VmRSS) of the server and any children it spawned, in MB (10^6 B)."""
        parent = psutil.Process(self.process.pid)
        processes = [parent, *parent.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes) / 1_000_000


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running(spec: ServerSpec) -> Iterator[RunningServer]:
    """Spawn the server, wait until it is healthy, and always stop it on exit."""
    with running_all([spec]) as (server,):
        yield server


@contextmanager
def running_all(specs: Sequence[ServerSpec]) -> Iterator[list[RunningServer]]:
    """Spawn every server at once, wait until each is healthy, and always stop them all."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = []
        for spec in specs:
            started.append(time.perf_counter())
            processes.append(_spawn(spec))
        yield [
            RunningServer(process, spec.base_url, _wait_healthy(process, spec, spawned))
            for process, spec, spawned in zip(processes, specs, started, strict=True)
        ]
    finally:
        for process in processes:
            stop(process)


def _spawn(spec: ServerSpec) -> subprocess.Popen[bytes]:
    with spec.log_path.open("wb") as log:
        return subprocess.Popen(
            list(spec.argv),
            cwd=spec.cwd,
            env=dict(spec.env),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pin_to(SERVER_CPUS if spec.cpus is None else set(spec.cpus)),
        )


def pin_to(cpus: set[int]) -> Callable[[], None] | None:
    """A pre-exec hook pinning the child to ``cpus``; None where that is not possible."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _wait_healthy(process: subprocess.Popen[bytes], spec: ServerSpec, spawned: float) -> float:
    """Seconds from spawn until ``GET /health`` first returns 200."""
    deadline = spawned + READY_TIMEOUT_SECONDS
    with httpx.Client(base_url=spec.base_url, timeout=1.0) as client:
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                raise ServerFailed(f"exited with {process.returncode}:\n{_log_tail(spec)}")
            try:
                if client.get("/health").status_code == 200:
                    return time.perf_counter() - spawned
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(POLL_INTERVAL_SECONDS)
    raise ServerFailed(f"not healthy after {READY_TIMEOUT_SECONDS:.0f} s:\n{_log_tail(spec)}")


def _log_tail(spec: ServerSpec) -> str:
    text = spec.log_path.read_text(encoding="utf-8", errors="replace")
    return text[-_LOG_TAIL_CHARS:]


def stop(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM for a graceful shutdown, SIGKILL if it hangs; children too."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        child.kill()
