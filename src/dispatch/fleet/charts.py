"""The fleet overview's charts: bytes rescued per hour and per node, laid out as bars.

The query reads when each copy was rescued and how big it is; everything else is pure:
bucketing by clock hour and the geometry of the bars, which the admin UI draws as inline
SVG (no script, no chart library).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.fleet import monitor
from dispatch.fleet.monitor import HOUR, NodeRow
from dispatch.models import RescueAsset, RescueCopy

HOURS_CHARTED = 24
NODES_CHARTED = 20

# Columns (the hourly chart): a fixed frame, one column a bucket.
COL_WIDTH, COL_HEIGHT = 640, 200
COL_LEFT, COL_RIGHT, COL_TOP, COL_BOTTOM = 72, 8, 10, 22
# Rows (the per-node chart): one row a node, the name on the left, the value on the right.
ROW_WIDTH, ROW_STEP, ROW_BAR = 640, 22, 16
ROW_LEFT, ROW_RIGHT, ROW_TOP, ROW_BOTTOM = 170, 80, 4, 4


@dataclass(frozen=True, slots=True)
class Bar:
    key: str  # what the bar counts: an hour (ISO 8601) or a node id
    label: str
    value: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class BarChart:
    """Bars inside a ``width`` x ``height`` frame; the plot spans ``left``..``right``,
    ``top``..``bottom``; ``peak`` is the largest value, the one a full bar stands for."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    peak: int
    total: int
    bars: list[Bar]


def _share(value: int, peak: int) -> float:
    return value / peak if peak > 0 else 0.0


def hour_buckets(
    points: Iterable[tuple[datetime, int]], now: datetime, hours: int = HOURS_CHARTED
) -> list[tuple[datetime, int]]:
    """Bytes per clock hour, oldest first, the last bucket being the hour ``now`` is in;
    points before the first bucket are left out, any after ``now`` count in the last."""
    current = now.replace(minute=0, second=0, microsecond=0)
    first = current - (hours - 1) * HOUR
    totals = [0] * hours
    for at, size in points:
        if at < first:
            continue
        index = min(int((at - first) / HOUR), hours - 1)
        totals[index] += size
    return [(first + index * HOUR, total) for index, total in enumerate(totals)]


def columns(values: Sequence[tuple[str, str, int]]) -> BarChart:
    """Vertical bars side by side, one per ``(key, label, value)``, scaled to the largest."""
    peak = max((value for _, _, value in values), default=0)
    plot_width = COL_WIDTH - COL_LEFT - COL_RIGHT
    plot_height = COL_HEIGHT - COL_TOP - COL_BOTTOM
    slot = plot_width / max(len(values), 1)
    bars = []
    for index, (key, label, value) in enumerate(values):
        height = _share(value, peak) * plot_height
        x = COL_LEFT + index * slot + slot * 0.1
        y = COL_TOP + plot_height - height
        bars.append(
            Bar(key, label, value, round(x, 1), round(y, 1), round(slot * 0.8, 1), round(height, 1))
        )
    return BarChart(
        COL_WIDTH,
        COL_HEIGHT,
        COL_LEFT,
        COL_WIDTH - COL_RIGHT,
        COL_TOP,
        COL_HEIGHT - COL_BOTTOM,
        peak,
        sum(value for _, _, value in values),
        bars,
    )


def rows(values: Sequence[tuple[str, str, int]]) -> BarChart:
    """Horizontal bars one under the other, one per ``(key, label, value)``."""
    peak = max((value for _, _, value in values), default=0)
    plot_width = ROW_WIDTH - ROW_LEFT - ROW_RIGHT
    height = ROW_TOP + len(values) * ROW_STEP + ROW_BOTTOM
    bars = [
        Bar(
            key,
            label,
            value,
            ROW_LEFT,
            ROW_TOP + index * ROW_STEP + (ROW_STEP - ROW_BAR) / 2,
            round(_share(value, peak) * plot_width, 1),
            ROW_BAR,
        )
        for index, (key, label, value) in enumerate(values)
    ]
    total = sum(value for _, _, value in values)
    return BarChart(
        ROW_WIDTH,
        height,
        ROW_LEFT,
        ROW_WIDTH - ROW_RIGHT,
        ROW_TOP,
        height - ROW_BOTTOM,
        peak,
        total,
        bars,
    )


def hourly_chart(buckets: Sequence[tuple[datetime, int]]) -> BarChart:
    return columns([(at.isoformat(), at.strftime("%H:%M"), total) for at, total in buckets])


def node_chart(found: Iterable[NodeRow], most: int = NODES_CHARTED) -> BarChart:
    """The ``most`` nodes that rescued the most bytes, largest first; nodes with none are left
    out."""
    ranked = sorted(
        (row for row in found if row.bytes_rescued > 0),
        key=lambda row: (-row.bytes_rescued, row.node.id),
    )
    return rows([(row.node.id, row.node.name, row.bytes_rescued) for row in ranked[:most]])


async def bytes_per_hour(
    session: AsyncSession, now: datetime, hours: int = HOURS_CHARTED
) -> list[tuple[datetime, int]]:
    """Bytes rescued in each of the last ``hours`` clock hours (the overview's byte count:
    as the node reported, else the asset's size)."""
    size = monitor.copy_bytes()
    found = await session.execute(
        select(RescueCopy.rescued_at, size)
        .join(RescueAsset, RescueAsset.id == RescueCopy.asset_id)
        .where(RescueCopy.state == "rescued", RescueCopy.rescued_at >= now - hours * HOUR)
    )
    points = [(at, int(total)) for at, total in found if at is not None]
    return hour_buckets(points, now, hours)
