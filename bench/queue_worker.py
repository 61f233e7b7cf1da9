"""One side's real queue worker in a process of its own, for bench/queue.py.

The latency and crash-recovery runs start it beside the enqueuing benchmark process. It
opens the side's existing storage, writes a ``ready`` line and then one line per job start to
``--starts`` (``seq enqueued_at started_at pid attempt``, wall-clock seconds), and stops
gracefully on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module: the repository root takes its place (runnable from anywhere).
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.queue_sides import SIDE_KEYS, StartLog, WorkerOptions, make_side

from dispatch.telemetry.logging import configure_logging


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--side", choices=SIDE_KEYS, required=True)
    parser.add_argument("--workdir", type=Path, required=True, help="Where SQLite files live")
    parser.add_argument("--postgres-url", required=True)
    parser.add_argument("--starts", type=Path, required=True, help="File to append starts to")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--lease-seconds", type=float, help="Dispatch only")
    parser.add_argument("--upkeep-seconds", type=float, help="Dispatch only")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    side = make_side(args.side, workdir=args.workdir, postgres_url=args.postgres_url)
    options = WorkerOptions(args.concurrency, args.lease_seconds, args.upkeep_seconds)
    log = StartLog(args.starts)
    await side.open(fresh=False)
    try:
        log.mark_ready()
        await side.run_worker(log, stop, options)
    finally:
        await side.close()
        log.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("WARNING", "console")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
