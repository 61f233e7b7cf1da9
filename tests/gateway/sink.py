"""A real HTTP receiver on loopback whose answers a test controls, path by path."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # loop time of arrival

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"
    # Answers to use first, one per request, before falling back to ``status``.
    script: list[int] = field(default_factory=list)


class Sink:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.behaviours: dict[str, Behaviour] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._arrived = asyncio.Event()
        self.in_flight = 0
        self.max_in_flight = 0

    async def start(self) -> Sink:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A hanging handler must not hold up the test's teardown.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def set(self, path: str, **behaviour: Any) -> None:
        self.behaviours["/" + path.lstrip("/")] = Behaviour(**behaviour)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == "/" + path.lstrip("/")]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        arrived = asyncio.get_running_loop().time()
        headers = dict(request.headers)
        self.received.append(Received(request.path, request.method, headers, body, arrived))
        self._arrived.set()
        behaviour = self.behaviours.get(request.path, Behaviour())
        status = behaviour.script.pop(0) if behaviour.script else behaviour.status
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if behaviour.delay:
                await asyncio.sleep(behaviour.delay)
        finally:
            self.in_flight -= 1
        return web.Response(status=status, text=behaviour.body, headers=behaviour.headers)

    async def wait_for(self, count: int, path: str | None = None, seconds: float = 15.0) -> None:
        """Until ``count`` requests arrived (at ``path``, when given)."""

        async def enough() -> None:
            while len(self.at(path) if path else self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(enough(), seconds)
