"""Admin UI pages for the fleet (data rescue), read-only: the overview with its charts, the
assets by priority, one asset's copies, and each node's progress and throughput.

The pages read what the JSON API reads (``dispatch.fleet.routes``): ``monitor.overview``,
``monitor.asset_rows`` and ``monitor.node_rows``; the charts come from ``fleet.charts``.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import NotFound
from dispatch.fleet import charts, monitor
from dispatch.fleet.routes import copy_out
from dispatch.models import RescueAsset
from dispatch.web.auth import UiUser, UiUserDep
from dispatch.web.catalog_forms import web_link
from dispatch.web.pages import page

router = APIRouter(prefix="/ui/fleet", include_in_schema=False)

PAGE_SIZE = 50
_UNITS = ("B", "KB", "MB", "GB", "TB")


def human_bytes(count: float | None) -> str:
    """``1536`` as ``1.5 KB``: binary multiples, as disk tools count them."""
    if count is None:
        return "—"
    value = float(count)
    if abs(value) < 1024:
        return f"{value:.0f} B"
    for unit in _UNITS[1:]:
        value /= 1024
        if abs(round(value, 1)) < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def magnet_href(link: str | None) -> str | None:
    """``link`` when it is a magnet URI; a node reports it, so anything else stays text."""
    if link and link.strip().lower().startswith("magnet:"):
        return link.strip()
    return None


def _render(
    request: Request, user: UiUser, name: str, context: dict[str, Any], status: int = 200
) -> Response:
    helpers = {"user": user, "size": human_bytes, "link": web_link, "magnet": magnet_href}
    return page(request, f"fleet/{name}", helpers | context, status)


@router.get("", response_class=HTMLResponse)
async def overview_page(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: UiUserDep
) -> Response:
    now = utcnow()
    settings = runtime.settings
    context = {
        "o": await monitor.overview(session, settings),
        "hourly": charts.hourly_chart(await charts.bytes_per_hour(session, now)),
        "per_node": charts.node_chart(await monitor.node_rows(session, settings, now)),
        "nodes_charted": charts.NODES_CHARTED,
    }
    return _render(request, user, "overview.html", context)


def _assets_url(at_risk: bool, limit: int, offset: int) -> str:
    query: dict[str, int] = {"at_risk": 1} if at_risk else {}
    if limit != PAGE_SIZE:
        query["limit"] = limit
    if offset:
        query["offset"] = offset
    return "/ui/fleet/assets" + (f"?{urlencode(query)}" if query else "")


@router.get("/assets", response_class=HTMLResponse)
async def assets_page(
    request: Request,
    session: SessionDep,
    user: UiUserDep,
    at_risk: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """``at_risk=1``: only assets with fewer rescued copies than their target."""
    found = await monitor.asset_rows(session, at_risk=at_risk, limit=limit + 1, offset=offset)
    context = {
        "rows": found[:limit],
        "at_risk": at_risk,
        "offset": offset,
        "previous_url": _assets_url(at_risk, limit, max(offset - limit, 0)) if offset else None,
        "next_url": _assets_url(at_risk, limit, offset + limit) if len(found) > limit else None,
        "all_url": _assets_url(False, limit, 0),
        "at_risk_url": _assets_url(True, limit, 0),
    }
    return _render(request, user, "assets.html", context)


@router.get("/assets/{asset_id}", response_class=HTMLResponse)
async def asset_page(
    asset_id: int, request: Request, session: SessionDep, user: UiUserDep
) -> Response:
    asset = await session.get(RescueAsset, asset_id)
    if asset is None:
        raise NotFound(f"Asset {asset_id} does not exist")
    copies = [copy_out(found) for found in await monitor.asset_copies(session, asset_id)]
    context = {
        "asset": asset,
        "copies": copies,
        "rescued": sum(1 for copy in copies if copy.state == "rescued"),
        "in_flight": sum(1 for copy in copies if copy.state == "assigned"),
    }
    return _render(request, user, "asset.html", context)


@router.get("/nodes", response_class=HTMLResponse)
async def nodes_page(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: UiUserDep
) -> Response:
    settings = runtime.settings
    context = {
        "rows": await monitor.node_rows(session, settings, utcnow()),
        "silent_seconds": settings.node_silent_seconds,
    }
    return _render(request, user, "nodes.html", context)
