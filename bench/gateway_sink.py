"""The receiver bench/gateway.py delivers to: a small aiohttp server in a process of its own.

Every POST is written down on arrival: its path, the ``X-Dispatch-Task`` header (empty for
the bare clients) and the ``sent_at`` wall-clock stamp the benchmark put in the JSON body.
The path decides the answer: ``/fail…`` answers 500 at once, ``/hold…`` answers 200 once
``POST /_release`` is called (or after ``--hold-seconds`` at most), anything else 200 at once.
``GET /_stats`` and ``GET /_records?path=`` report what arrived since the last
``POST /_reset``; ``GET /health`` answers when it is up.
Run as ``python bench/gateway_sink.py --port P [--hold-seconds S]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module (which asyncio imports).
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))

import asyncio
import contextlib

import uvloop
from aiohttp import web


@dataclass
class PathLog:
    """What arrived on one path: (task header, sent_at, arrived_at) per request."""

    records: list[tuple[str, float | None, float]] = field(default_factory=list)
    tasks: set[str] = field(default_factory=set)

    def summary(self) -> dict[str, object]:
        return {
            "count": len(self.records),
            "distinct_tasks": len(self.tasks),
            "first_at": self.records[0][2] if self.records else None,
            "last_at": self.records[-1][2] if self.records else None,
        }


class Sink:
    def __init__(self, hold_seconds: float) -> None:
        self.hold_seconds = hold_seconds
        self.paths: dict[str, PathLog] = {}
        self.in_flight = 0
        self.in_flight_max = 0
        self.released = asyncio.Event()

    async def receive(self, request: web.Request) -> web.Response:
        arrived = time.time()
        body = await request.read()
        try:
            sent_at = json.loads(body).get("sent_at")
        except (ValueError, AttributeError):
            sent_at = None
        task = request.headers.get("X-Dispatch-Task", "")
        log = self.paths.setdefault(request.path, PathLog())
        log.records.append((task, sent_at, arrived))
        if task:
            log.tasks.add(task)
        if request.path.startswith("/fail"):
            return web.Response(status=500, text="failing on purpose")
        if request.path.startswith("/hold"):
            self.in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self.in_flight)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.released.wait(), self.hold_seconds)
            finally:
                self.in_flight -= 1
        return web.Response(text="ok")

    async def stats(self, _: web.Request) -> web.Response:
        paths = {path: log.summary() for path, log in self.paths.items()}
        return web.json_response(
            {"paths": paths, "in_flight": self.in_flight, "in_flight_max": self.in_flight_max}
        )

    async def records(self, request: web.Request) -> web.Response:
        log = self.paths.get(request.query.get("path", ""), PathLog())
        return web.json_response(log.records)

    async def reset(self, _: web.Request) -> web.Response:
        self.paths.clear()
        self.in_flight_max = self.in_flight
        self.released = asyncio.Event()
        return web.json_response({"reset": True})

    async def release(self, _: web.Request) -> web.Response:
        self.released.set()
        return web.json_response({"released": self.in_flight})

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def build_app(hold_seconds: float) -> web.Application:
    sink = Sink(hold_seconds)
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_get("/health", sink.health)
    app.router.add_get("/_stats", sink.stats)
    app.router.add_get("/_records", sink.records)
    app.router.add_post("/_reset", sink.reset)
    app.router.add_post("/_release", sink.release)
    app.router.add_post("/{tail:.*}", sink.receive)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--hold-seconds", type=float, default=60.0, help="The longest /hold… waits for a release"
    )
    args = parser.parse_args()
    web.run_app(
        build_app(args.hold_seconds),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        backlog=2048,
        # The loop `dispatch serve` runs on: uvicorn picks uvloop when it is installed.
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
