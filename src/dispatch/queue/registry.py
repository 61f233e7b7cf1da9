"""Job handlers, registered by name (``"gateway.deliver"``) with typed arguments."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from dispatch.db.engine import Database
from dispatch.queue.policy import RetryPolicy
from dispatch.queue.schedules import ScheduleSpec, validate
from dispatch.queue.service import ClaimedJob

HandlerResult = dict[str, Any] | None


@dataclass
class JobContext:
    """What a running handler sees: its job, the database, progress and cancellation."""

    job: ClaimedJob
    database: Database
    worker: str = ""
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    pending_progress: dict[str, Any] | None = None

    def report_progress(self, progress: dict[str, Any]) -> None:
        """Recorded with the next heartbeat (no extra write per call)."""
        self.pending_progress = progress


HandlerFn = Callable[[JobContext, Any], Awaitable[HandlerResult]]


@dataclass(frozen=True)
class Handler:
    kind: str
    fn: HandlerFn
    args_model: type[BaseModel] | None
    policy: RetryPolicy
    timeout_seconds: float | None

    def parse(self, raw: dict[str, Any]) -> Any:
        """Typed arguments (validated by the model), or the raw dict without one."""
        return self.args_model.model_validate(raw) if self.args_model else raw


class Registry:
    """Handlers by kind. Domains register theirs; the queue knows none of them."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._schedules: dict[str, ScheduleSpec] = {}
        self._loops: dict[str, Callable[[], Awaitable[None]]] = {}

    def loop(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run ``factory()`` beside every worker's claim loop, for as long as the worker runs.

        For work that must follow the database more closely than a schedule's one-second
        slots allow (the watch domain follows the catalogue's change feed); the loop must
        tolerate several workers running it at once.
        """
        if name in self._loops:
            raise ValueError(f"a loop named {name!r} is already registered")
        self._loops[name] = factory

    @property
    def loops(self) -> dict[str, Callable[[], Awaitable[None]]]:
        return dict(self._loops)

    def schedule(self, spec: ScheduleSpec) -> None:
        """Run ``spec.kind`` at every slot of ``spec.expression`` (validated now, not at 3 a.m.)."""
        validate(spec.expression)
        self._schedules[spec.name] = spec

    @property
    def schedules(self) -> list[ScheduleSpec]:
        return list(self._schedules.values())

    def register(
        self,
        kind: str,
        *,
        args: type[BaseModel] | None = None,
        policy: RetryPolicy | None = None,
        timeout_seconds: float | None = None,
    ) -> Callable[[HandlerFn], HandlerFn]:
        def decorate(fn: HandlerFn) -> HandlerFn:
            if kind in self._handlers:
                raise ValueError(f"a handler for {kind!r} is already registered")
            self._handlers[kind] = Handler(kind, fn, args, policy or RetryPolicy(), timeout_seconds)
            return fn

        return decorate

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)
