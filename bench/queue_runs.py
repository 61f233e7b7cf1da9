"""How bench/queue.py measures each workload on one side (no figures are judged here).

Throughput workloads run in the benchmark's process, time-boxed: they count what one loop (or
the side's real worker) gets through in ``Run.seconds``. Latency and crash recovery run the
side's real worker in another process pinned to its own core, and read the start times its
handler writes to a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

from bench.common import REPO_ROOT, Latency, base_env
from bench.queue_sides import DispatchSide, Side, StartLog, WorkerOptions
from bench.serving import SERVER_CPUS, pin_to, stop

T = TypeVar("T")
WORKER_SCRIPT = REPO_ROOT / "bench" / "queue_worker.py"
LATENCY_RATE = 100  # jobs per second, paced
LATENCY_CONCURRENCY = 4  # Dispatch's WORKER_CONCURRENCY default, given to every side
DRAIN_CONCURRENCY = 10
WORKER_START_SECONDS = 1.0  # added to a drain's time box for the worker to start
READY_TIMEOUT_SECONDS = 60.0
SETTLE_TIMEOUT_SECONDS = 30.0
PROBE_INTERVAL_SECONDS = 0.25
FILE_POLL_SECONDS = 0.005


@dataclass(frozen=True)
class Run:
    """How long and how often: the full run's and ``--quick``'s values differ."""

    seconds: float  # time box of each throughput workload
    rounds: int
    backlog: int  # jobs waiting before a claim or drain workload
    latency_seconds: float
    recovery_rounds: int
    recovery_lease: float = 2.0
    recovery_upkeep: float = 1.0


@dataclass(frozen=True)
class Throughput:
    jobs: int
    seconds: float
    exhausted: bool = False  # the backlog ran out before the time box did

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else 0.0


class Start(NamedTuple):
    """One line a worker's handler wrote: a job started."""

    seq: int
    enqueued_at: float
    started_at: float
    pid: int
    attempt: int


def read_starts(path: Path) -> list[Start]:
    if not path.exists():
        return []
    starts: list[Start] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 5:
            seq, at, started, pid, attempt = parts
            starts.append(Start(int(seq), float(at), float(started), int(pid), int(attempt)))
    return starts


def ready_pids(path: Path) -> set[int]:
    if not path.exists():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    return {int(line.split()[1]) for line in lines if line.startswith("ready ")}


async def measure_enqueue(side: Side, run: Run, batch: int) -> Throughput | None:
    """Enqueue ``batch`` jobs per transaction, one transaction after another."""
    if batch > 1 and not side.batch_enqueue:
        return None
    jobs = 0
    started = time.perf_counter()
    deadline = started + run.seconds
    while time.perf_counter() < deadline:
        now = time.time()
        await side.enqueue([{"seq": jobs + n, "at": now} for n in range(batch)])
        jobs += batch
    return Throughput(jobs, time.perf_counter() - started)


async def top_up(side: Side, backlog: int) -> int:
    """Bring the waiting jobs up to ``backlog``; returns how many are waiting."""
    pending = await side.pending()
    if pending < backlog:
        await side.prefill(backlog - pending)
    return max(pending, backlog)


async def measure_claims(side: Side, run: Run, batch: int) -> Throughput | None:
    """Claim ``batch`` jobs and complete them, in a loop, from a waiting backlog."""
    if batch > 1 and not side.batch_claim:
        return None
    await top_up(side, run.backlog)
    jobs = 0
    started = time.perf_counter()
    deadline = started + run.seconds
    exhausted = False
    while time.perf_counter() < deadline:
        done = await side.claim_complete(batch)
        if done == 0:
            exhausted = True
            break
        jobs += done
    return Throughput(jobs, time.perf_counter() - started, exhausted)


async def measure_drain(side: Side, run: Run) -> Throughput:
    """The side's real worker, in this process, starting jobs from a waiting backlog.

    The rate is starts per second between the first and the last start, so the worker's
    start-up and shutdown are left out.
    """
    waiting = await top_up(side, run.backlog)
    loop = asyncio.get_running_loop()
    halt = asyncio.Event()
    log = StartLog()
    log.target = waiting

    def on_target() -> None:  # Huey calls it from a worker thread
        loop.call_soon_threadsafe(halt.set)

    log.on_target = on_target
    timer = loop.call_later(run.seconds + WORKER_START_SECONDS, halt.set)
    try:
        await side.run_worker(log, halt, WorkerOptions(DRAIN_CONCURRENCY))
    finally:
        timer.cancel()
        log.close()
    if log.first_at is None or log.last_at is None or log.count < 2:
        raise RuntimeError(f"{side.label}: the worker started {log.count} jobs")
    return Throughput(log.count - 1, log.last_at - log.first_at, log.count >= waiting)


class WorkerDied(RuntimeError):
    """A worker under test stopped before it was asked to."""


async def wait_until(
    probe: Callable[[], T | None], limit_seconds: float, what: str, alive: Callable[[], None]
) -> T:
    """Poll ``probe`` until it returns something; ``alive`` raises if a worker died."""
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        alive()
        await asyncio.sleep(FILE_POLL_SECONDS)
    raise TimeoutError(f"gave up after {limit_seconds:g} s waiting for {what}")


def _log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else ""


def spawn_worker(
    side: Side, starts: Path, options: WorkerOptions, workdir: Path, postgres_url: str
) -> subprocess.Popen[bytes]:
    """``bench/queue_worker.py`` for ``side``, pinned to the server core."""
    argv = [sys.executable, str(WORKER_SCRIPT), "--side", side.key, "--workdir", str(workdir)]
    argv += ["--postgres-url", postgres_url, "--starts", str(starts)]
    argv += ["--concurrency", str(options.concurrency)]
    if options.lease_seconds is not None:
        argv += ["--lease-seconds", str(options.lease_seconds)]
    if options.upkeep_seconds is not None:
        argv += ["--upkeep-seconds", str(options.upkeep_seconds)]
    with starts.with_suffix(".out").open("wb") as output:
        return subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=base_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=pin_to(SERVER_CPUS),
        )


@contextlib.asynccontextmanager
async def worker_process(
    side: Side, starts: Path, options: WorkerOptions, workdir: Path, postgres_url: str
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A worker process for the block; stopped gracefully (SIGTERM) on exit."""
    process = spawn_worker(side, starts, options, workdir, postgres_url)
    try:
        yield process
    finally:
        if process.poll() is None:
            await asyncio.to_thread(stop, process)


def process_alive(process: subprocess.Popen[bytes], output: Path) -> Callable[[], None]:
    def check() -> None:
        if process.poll() is not None:
            raise WorkerDied(f"exited with {process.returncode}:\n{_log_tail(output)}")

    return check


@contextlib.asynccontextmanager
async def worker_in_process(
    side: Side, starts: Path, options: WorkerOptions
) -> AsyncIterator[Callable[[], None]]:
    """The side's worker as a task of this process (Dispatch's embedded deployment)."""
    log = StartLog(starts)
    halt = asyncio.Event()
    task = asyncio.create_task(side.run_worker(log, halt, options))

    def check() -> None:
        if task.done():
            task.result()
            raise WorkerDied("the in-process worker returned")

    try:
        yield check
    finally:
        halt.set()
        await task
        log.close()


async def paced_latency(
    side: Side, starts: Path, seconds: float, alive: Callable[[], None]
) -> Latency:
    """Probe until the worker runs jobs, then enqueue at LATENCY_RATE and collect the starts."""

    async def probe_until_started() -> None:
        while not any(s.seq < 0 for s in read_starts(starts)):
            alive()
            await side.enqueue([{"seq": -1, "at": time.time()}])
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)

    await asyncio.wait_for(probe_until_started(), READY_TIMEOUT_SECONDS)
    total = int(seconds * LATENCY_RATE)
    began = time.perf_counter()
    for seq in range(total):
        delay = began + seq / LATENCY_RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await side.enqueue([{"seq": seq, "at": time.time()}])
    produced_in = time.perf_counter() - began

    def all_started() -> list[Start] | None:
        found = {s.seq: s for s in reversed(read_starts(starts)) if s.seq >= 0}
        return list(found.values()) if len(found) == total else None

    found = await wait_until(all_started, SETTLE_TIMEOUT_SECONDS, "every job to start", alive)
    samples = [(s.started_at - s.enqueued_at) * 1000 for s in found]
    return Latency(sorted(samples), total, produced_in)


async def measure_latency(
    side: Side, run: Run, workdir: Path, postgres_url: str, *, embedded: bool
) -> Latency:
    """Enqueue-to-start at a steady LATENCY_RATE, the worker in another process or this one."""
    await side.clear()
    starts = workdir / f"latency-{side.key}{'-embedded' if embedded else ''}.log"
    options = WorkerOptions(LATENCY_CONCURRENCY)
    if embedded:
        async with worker_in_process(side, starts, options) as alive:
            result = await paced_latency(side, starts, run.latency_seconds, alive)
    else:
        async with worker_process(side, starts, options, workdir, postgres_url) as process:
            alive = process_alive(process, starts.with_suffix(".out"))
            result = await paced_latency(side, starts, run.latency_seconds, alive)
    print(
        f"  p50 {result.percentile(50):.1f} ms, p95 {result.percentile(95):.1f} ms, "
        f"p99 {result.percentile(99):.1f} ms ({'same process' if embedded else 'worker process'})",
        file=sys.stderr,
    )
    return result


def _first(paths: Sequence[Path], seq: int, attempt: int) -> Start | None:
    for path in paths:
        for start in read_starts(path):
            if start.seq == seq and start.attempt == attempt:
                return start
    return None


@dataclass(frozen=True)
class Recovery:
    """Seconds from ``kill -9`` until the reaper took the lease back and until the job restarted."""

    reaped: float
    restarted: float


async def recover_once(
    side: DispatchSide, run: Run, workdir: Path, postgres_url: str, seq: int
) -> Recovery:
    """Two workers; kill -9 the one running a hung job; time until the other one restarts it."""
    paths = [workdir / f"crash-{side.key}-{seq}-{n}.log" for n in (1, 2)]
    options = WorkerOptions(LATENCY_CONCURRENCY, run.recovery_lease, run.recovery_upkeep)
    async with (
        worker_process(side, paths[0], options, workdir, postgres_url) as first,
        worker_process(side, paths[1], options, workdir, postgres_url) as second,
    ):
        processes = {first.pid: (first, paths[0]), second.pid: (second, paths[1])}

        def alive() -> None:
            for process, path in processes.values():
                process_alive(process, path.with_suffix(".out"))()

        def both_ready() -> bool | None:
            return True if all(ready_pids(path) for path in paths) else None

        await wait_until(both_ready, READY_TIMEOUT_SECONDS, "both workers", alive)
        await side.enqueue([{"seq": seq, "at": time.time(), "hang": True}])
        hung = await wait_until(lambda: _first(paths, seq, 1), 30.0, "the first attempt", alive)
        os.kill(hung.pid, signal.SIGKILL)
        killed_at = time.time()
        await asyncio.to_thread(processes.pop(hung.pid)[0].wait)
        limit = 4 * (run.recovery_lease + run.recovery_upkeep) + 10.0
        again = await wait_until(lambda: _first(paths, seq, 2), limit, "the retry", alive)
    reaped_at = await side.lease_expired_at()
    if reaped_at is None:
        raise RuntimeError(f"{side.label}: the job restarted but no lease was reaped")
    return Recovery(reaped_at - killed_at, again.started_at - killed_at)


async def measure_recovery(
    side: DispatchSide, run: Run, workdir: Path, postgres_url: str
) -> list[Recovery]:
    """``Run.recovery_rounds`` crash drills with a short lease and upkeep interval."""
    await side.clear()
    drills: list[Recovery] = []
    for seq in range(run.recovery_rounds):
        drills.append(await recover_once(side, run, workdir, postgres_url, seq))
        print(
            f"  lease reaped {drills[-1].reaped:.2f} s after the kill, "
            f"job restarted after {drills[-1].restarted:.2f} s",
            file=sys.stderr,
        )
    return drills
