"""Quiet hours and delivery frequency, exhaustively (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatch.watch.timing import Delivery, due_at, in_quiet_hours


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("hour", "start", "end", "quiet"),
    [
        (23, 22, 7, True),
        (0, 22, 7, True),
        (6, 22, 7, True),
        (7, 22, 7, False),
        (21, 22, 7, False),
        (22, 22, 7, True),
        (13, 12, 14, True),
        (14, 12, 14, False),
        (11, 12, 14, False),
        (5, 5, 5, False),  # equal bounds: no quiet hours
        (5, None, None, False),
    ],
)
def test_quiet_hours_wrap_midnight(hour: int, start: int, end: int, quiet: bool) -> None:
    assert in_quiet_hours(hour, start, end) is quiet


@pytest.mark.parametrize(
    ("delivery", "now", "due"),
    [
        (Delivery(), "2026-12-02 10:17:05", "2026-12-02 10:17:05"),
        (Delivery("hourly"), "2026-12-02 10:17:05", "2026-12-02 11:00:00"),
        (Delivery("hourly"), "2026-12-02 11:00:00", "2026-12-02 11:00:00"),
        (Delivery("daily"), "2026-12-02 07:59:00", "2026-12-02 08:00:00"),
        (Delivery("daily"), "2026-12-02 08:00:01", "2026-12-03 08:00:00"),
        # Paris is UTC+1 in December: 08:00 local is 07:00 UTC.
        (Delivery("daily", "Europe/Paris"), "2026-12-02 10:00:00", "2026-12-03 07:00:00"),
        # Quiet 22-7 in Paris: 23:30 local (22:30 UTC) waits for 07:00 local (06:00 UTC).
        (Delivery("instant", "Europe/Paris", 22, 7), "2026-12-02 22:30:00", "2026-12-03 06:00:00"),
        # 01:00 local, after midnight inside the same quiet span: released the same morning.
        (Delivery("instant", "Europe/Paris", 22, 7), "2026-12-03 00:00:00", "2026-12-03 06:00:00"),
        (Delivery("instant", "Europe/Paris", 22, 7), "2026-12-03 08:00:00", "2026-12-03 08:00:00"),
        # An hourly slot that falls in the quiet hours moves to their end.
        (Delivery("hourly", "UTC", 12, 14), "2026-12-02 11:30:00", "2026-12-02 14:00:00"),
        # A daily digest at 08:00 inside quiet hours 6-9 waits until 09:00.
        (Delivery("daily", "UTC", 6, 9), "2026-12-02 10:00:00", "2026-12-03 09:00:00"),
        # New York changes to summer time on 2026-03-08: 08:00 local is 12:00 UTC after it.
        (Delivery("daily", "America/New_York"), "2026-03-07 14:00:00", "2026-03-08 12:00:00"),
        (Delivery("daily", "Not/AZone"), "2026-12-02 09:00:00", "2026-12-03 08:00:00"),
    ],
)
def test_due_at(delivery: Delivery, now: str, due: str) -> None:
    assert due_at(delivery, utc(now)) == utc(due)
