"""A small supervisor for the named background tasks of one process.

Each task is a coroutine factory; a task that crashes is logged and restarted
after a capped, growing delay, so one bad dependency cannot silently stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

TaskFactory = Callable[[], Awaitable[None]]


class Supervisor:
    def __init__(self, *, restart_base: float = 1.0, restart_cap: float = 60.0) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.restart_base = restart_base
        self.restart_cap = restart_cap

    def start(self, name: str, factory: TaskFactory) -> None:
        self._tasks[name] = asyncio.create_task(self._keep_running(name, factory), name=name)

    async def _keep_running(self, name: str, factory: TaskFactory) -> None:
        delay = self.restart_base
        while True:
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background.task_crashed", task=name, restart_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.restart_cap)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()


def every(seconds: float, action: Callable[[], Awaitable[object]]) -> TaskFactory:
    """A task factory that runs ``action`` every ``seconds``."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(seconds)
            await action()

    return loop
