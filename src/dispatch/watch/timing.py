"""When a notification may go out: quiet hours and delivery frequency (pure, no I/O).

``instant`` sends at once; ``hourly`` at the next full hour and ``daily`` at the next
``DIGEST_HOUR`` o'clock, in the user's notification time zone, so everything that waits
for the same moment goes out together as one digest. A moment inside the quiet hours
moves to their end. Quiet hours may wrap midnight (22 to 7); equal start and end mean
none. The in-app feed and the live stream are not held back: they are what a user looks at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DIGEST_HOUR = 8  # daily digests go out at 08:00 local time


@dataclass(frozen=True, slots=True)
class Delivery:
    frequency: str = "instant"  # instant, hourly, daily
    timezone: str = "UTC"
    quiet_start: int | None = None
    quiet_end: int | None = None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def in_quiet_hours(hour: int, start: int | None, end: int | None) -> bool:
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end  # wraps midnight


def _after_quiet(local: datetime, start: int | None, end: int | None) -> datetime:
    if end is None or not in_quiet_hours(local.hour, start, end):
        return local
    moved = local.replace(hour=end, minute=0, second=0, microsecond=0)
    return moved if moved > local else moved + timedelta(days=1)


def _slot(local: datetime, frequency: str) -> datetime:
    if frequency == "hourly":
        top = local.replace(minute=0, second=0, microsecond=0)
        return top if top == local else top + timedelta(hours=1)
    if frequency == "daily":
        at = local.replace(hour=DIGEST_HOUR, minute=0, second=0, microsecond=0)
        return at if at >= local else at + timedelta(days=1)
    return local


def due_at(delivery: Delivery, now: datetime) -> datetime:
    """The moment a notification created ``now`` may be sent (UTC)."""
    zone = _zone(delivery.timezone)
    local = now.astimezone(zone)
    slot = _slot(local, delivery.frequency)
    # Wall-clock arithmetic: re-attach the zone so a DST change lands on the right offset.
    slot = slot.replace(tzinfo=None).replace(tzinfo=zone)
    released = _after_quiet(slot, delivery.quiet_start, delivery.quiet_end)
    released = released.replace(tzinfo=None).replace(tzinfo=zone)
    return released.astimezone(UTC)
