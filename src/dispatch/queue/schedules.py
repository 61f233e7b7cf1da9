"""Schedules: 5- or 6-field cron expressions and fixed intervals, as pure functions.

A 6-field cron expression puts seconds first, as seed 001's ``SYNC_SCHEDULE``
(``*/30 * * * * *`` runs every 30 seconds). ``@every 90s`` (or ``m``, ``h``, ``d``)
is a fixed interval. An empty expression disables the schedule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

_EVERY = re.compile(r"^@every\s+(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class InvalidSchedule(ValueError):
    """The expression is neither cron (5 or 6 fields) nor ``@every <n><unit>``."""


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule defined in code: run ``kind`` with ``args`` at every slot of ``expression``."""

    name: str
    expression: str
    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"

    @property
    def enabled(self) -> bool:
        return bool(self.expression.strip())


def next_slot(expression: str, after: datetime) -> datetime:
    """The first slot strictly after ``after`` (UTC)."""
    text = expression.strip()
    every = _EVERY.match(text)
    if every:
        seconds = float(every.group(1)) * _UNITS[every.group(2)]
        if seconds <= 0:
            raise InvalidSchedule(f"{expression!r}: the interval must be positive")
        return after + timedelta(seconds=seconds)
    fields = text.split()
    if len(fields) not in (5, 6):
        raise InvalidSchedule(f"{expression!r}: cron needs 5 or 6 fields, or use '@every 30s'")
    seconds_first = len(fields) == 6
    if not croniter.is_valid(text, second_at_beginning=seconds_first):
        raise InvalidSchedule(f"{expression!r} is not a valid cron expression")
    start = after.astimezone(UTC)
    slot: datetime = croniter(text, start, second_at_beginning=seconds_first).get_next(datetime)
    return slot.astimezone(UTC)


def validate(expression: str) -> None:
    """Raise InvalidSchedule unless ``expression`` is empty or parses."""
    if expression.strip():
        next_slot(expression, datetime(2000, 1, 1, tzinfo=UTC))
