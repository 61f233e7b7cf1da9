"""The fleet pages over HTTP: who may see them, the overview's counts and charts, the assets
(the at-risk filter, pages), one asset's copies and the nodes' throughput."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.fleet.charts import columns, hour_buckets, rows
from dispatch.models import Node
from dispatch.web.fleet_pages import human_bytes, magnet_href
from tests.fleet.test_fleet_api import R, ask, asset, done, load, register, report
from tests.support import ADMIN_PASSWORD, admin_headers, make_settings
from tests.watch.conftest import new_user
from tests.web.test_ui import login
from tests.web.test_watch_ui import user_login

MIB = 1_048_576
CHECKSUM = "sha256:" + "cd" * 32
PAGES = ["/ui/fleet", "/ui/fleet/assets", "/ui/fleet/assets/1", "/ui/fleet/nodes"]


@dataclass
class Fleet:
    alpha: str
    beta: str
    beta_headers: dict[str, str]
    complete: int  # both copies rescued (alpha 2 MiB, beta 1 MiB)
    half: int  # one copy rescued by alpha (2 MiB)
    bare: int  # no copy rescued; alpha holds one


async def _fleet(http: httpx.AsyncClient) -> Fleet:
    """Three assets wanted twice each: one complete, one half rescued, one with none yet."""
    imported = await load(
        http, [asset(1, size_mb=1, priority=1), asset(2, size_mb=1, priority=2), asset(3, 1, 3)]
    )
    complete, half, bare = imported["asset_ids"]
    alpha, alpha_headers = await register(http, "alpha")
    beta, beta_headers = await register(http, "beta")
    given = await ask(http, alpha_headers, free_gb=10, name="alpha")
    held = {item["asset_id"]: item for item in given}
    assert set(held) == {complete, half, bare}
    rescued = [done(held[i]) | {"bytes": 2 * MIB, "checksum": CHECKSUM} for i in (complete, half)]
    assert (await report(http, alpha_headers, alpha, rescued))["status"] == "success"
    (second,) = await ask(http, beta_headers, free_gb=10, name="beta", limit=1)
    assert second["asset_id"] == complete  # priority first, and not on alpha again
    assert (await report(http, beta_headers, beta, [done(second) | {"bytes": MIB}]))[
        "status"
    ] == "success"
    return Fleet(alpha, beta, beta_headers, complete, half, bare)


@pytest.fixture
async def ui(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The app's client, signed in as the admin."""
    assert (await login(client, ADMIN_PASSWORD)).status_code == 303
    return client


def _count(page: str, name: str) -> str:
    found = re.search(rf'data-count="{name}">([^<]*)<', page)
    assert found, f"no count {name}"
    return found.group(1)


def _bars(page: str, chart: str, key: str) -> dict[str, int]:
    """The bars of one chart: their ``data-<key>`` and the bytes each stands for."""
    svg = re.search(rf'data-testid="{chart}">(.*?)</svg>', page, re.S)
    assert svg, f"no chart {chart}"
    found = re.findall(rf'<rect[^>]* data-{key}="([^"]+)" data-bytes="(\d+)"', svg.group(1))
    return {name: int(size) for name, size in found}


def _row(page: str, attribute: str, value: int | str) -> str:
    found = re.search(rf'<tr {attribute}="{value}">(.*?)</tr>', page, re.S)
    assert found, f"no row {attribute}={value}"
    return found.group(1)


def _listed(page: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr data-asset="(\d+)">', page)]


# Access ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
async def test_pages_need_an_admin_session(client: httpx.AsyncClient, path: str) -> None:
    anonymous = await client.get(path)
    assert (anonymous.status_code, anonymous.headers["location"]) == (
        303,
        f"/ui/login?next={path}",
    )
    await new_user(client, "alice@example.com", "a long password")
    assert (await user_login(client, "alice@example.com")).status_code == 303
    refused = await client.get(path)
    assert refused.status_code == 403
    assert 'data-code="admin_only"' in refused.text


async def test_the_navigation_links_the_fleet(ui: httpx.AsyncClient) -> None:
    assert 'href="/ui/fleet"' in (await ui.get("/ui/")).text


# Overview ----------------------------------------------------------------------------------


async def test_an_empty_fleet_shows_zeros_and_empty_charts(ui: httpx.AsyncClient) -> None:
    page = await ui.get("/ui/fleet")
    assert page.status_code == 200
    assert _count(page.text, "assets") == "0"
    assert _count(page.text, "bytes") == "0 B"
    hourly = _bars(page.text, "hourly-chart", "hour")
    assert len(hourly) == 24
    assert set(hourly.values()) == {0}
    assert 'data-testid="node-chart-empty"' in page.text


async def test_the_overview_counts_assets_copies_bytes_and_nodes(ui: httpx.AsyncClient) -> None:
    fleet = await _fleet(ui)
    page = (await ui.get("/ui/fleet")).text
    counts = {
        "assets": "3",
        "complete": "1",
        "at-risk": "2",
        "without-copy": "1",
        "copies": "3 / 6",
        "in-flight": "1",  # alpha's copy of the bare asset
        "bytes": "5.0 MB",
        "bytes-last-hour": "5.0 MB",
        "active": "2",
        "offline": "0",
        "silent": "0",
    }
    assert {name: _count(page, name) for name in counts} == counts

    hourly = _bars(page, "hourly-chart", "hour")
    assert len(hourly) == 24
    assert sum(hourly.values()) == 5 * MIB  # all rescued within the last hours
    assert hourly[max(hourly)] > 0  # the current hour, the last bar, has them
    heights = re.findall(r'height="([\d.]+)" data-hour', page)
    assert max(float(height) for height in heights) > 0

    per_node = _bars(page, "node-chart", "node")
    assert per_node == {fleet.alpha: 4 * MIB, fleet.beta: MIB}
    assert page.index(f'data-node="{fleet.alpha}"') < page.index(f'data-node="{fleet.beta}"')
    labels = re.findall(r'text-anchor="end">([^<]+)</text>\s*<rect[^>]*data-node', page)
    assert labels == ["alpha", "beta"]  # each bar named after its node
    assert f"<title>alpha ({fleet.alpha}): 4.0 MB</title>" in page


# Assets ------------------------------------------------------------------------------------


async def test_assets_by_priority_with_progress_and_holders(ui: httpx.AsyncClient) -> None:
    fleet = await _fleet(ui)
    page = await ui.get("/ui/fleet/assets")
    assert page.status_code == 200
    assert _listed(page.text) == [fleet.complete, fleet.half, fleet.bare]
    complete = _row(page.text, "data-asset", fleet.complete)
    assert "Dataset 1" in complete
    assert "2 / 2" in complete
    assert f"<code>{fleet.alpha}</code>" in complete
    assert f"<code>{fleet.beta}</code>" in complete
    bare = _row(page.text, "data-asset", fleet.bare)
    assert "0 / 2" in bare
    assert "<td>1</td>" in bare  # in flight on alpha
    assert f"<code>{fleet.alpha}</code>" in bare


async def test_the_at_risk_filter_leaves_out_complete_assets(ui: httpx.AsyncClient) -> None:
    fleet = await _fleet(ui)
    page = await ui.get("/ui/fleet/assets?at_risk=1")
    assert page.status_code == 200
    assert _listed(page.text) == [fleet.half, fleet.bare]
    assert 'name="at_risk" value="1" checked' in page.text
    # The API agrees on what is at risk.
    api = await ui.get(f"{R}/assets?at_risk=true", headers=admin_headers())
    assert [item["asset_id"] for item in api.json()] == _listed(page.text)


async def test_assets_page_by_limit_and_offset(ui: httpx.AsyncClient) -> None:
    fleet = await _fleet(ui)
    first = await ui.get("/ui/fleet/assets?limit=2")
    assert _listed(first.text) == [fleet.complete, fleet.half]
    assert 'data-testid="previous"' not in first.text
    following = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert following
    assert following.group(1) == "/ui/fleet/assets?limit=2&amp;offset=2"
    second = await ui.get("/ui/fleet/assets?limit=2&offset=2")
    assert _listed(second.text) == [fleet.bare]
    assert 'rel="next"' not in second.text
    assert 'href="/ui/fleet/assets?limit=2" rel="prev"' in second.text
    risky = await ui.get("/ui/fleet/assets?at_risk=1&limit=1")
    assert _listed(risky.text) == [fleet.half]
    assert 'href="/ui/fleet/assets?at_risk=1&amp;limit=1&amp;offset=1" rel="next"' in risky.text
    assert (await ui.get("/ui/fleet/assets?limit=0")).status_code == 422


# One asset ---------------------------------------------------------------------------------


async def test_an_asset_shows_each_copy(ui: httpx.AsyncClient) -> None:
    fleet = await _fleet(ui)
    page = await ui.get(f"/ui/fleet/assets/{fleet.complete}")
    assert page.status_code == 200
    assert 'data-testid="asset-name">Dataset 1<' in page.text
    first, second = _row(page.text, "data-replica", 1), _row(page.text, "data-replica", 2)
    assert 'data-testid="copy-state">rescued<' in first
    assert f"<code>{fleet.alpha}</code>" in first
    assert 'href="magnet:?xt=urn:btih:abc123"' in first
    assert CHECKSUM in first
    assert "2.0 MB" in first
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td>", first)  # rescued at, UTC
    assert f"<code>{fleet.beta}</code>" in second
    assert "1.0 MB" in second

    bare = (await ui.get(f"/ui/fleet/assets/{fleet.bare}")).text
    held, waiting = _row(bare, "data-replica", 1), _row(bare, "data-replica", 2)
    assert 'data-testid="copy-state">assigned<' in held
    assert f"<code>{fleet.alpha}</code>" in held
    assert 'data-testid="copy-state">waiting<' in waiting
    assert "0 / 2" in bare


async def test_an_unknown_asset_is_a_404_page(ui: httpx.AsyncClient) -> None:
    missing = await ui.get("/ui/fleet/assets/999999")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "Asset 999999 does not exist" in missing.text


# Nodes -------------------------------------------------------------------------------------


async def test_nodes_show_progress_failures_throughput_and_silence(
    ui: httpx.AsyncClient, db_settings: dict[str, Any]
) -> None:
    fleet = await _fleet(ui)
    (given,) = await ask(ui, fleet.beta_headers, free_gb=10, name="beta", limit=1)
    failure = {
        "asset_id": given["asset_id"],
        "job_id": given["job_id"],
        "lease_token": given["lease_token"],
        "status": "FAIL",
        "message": "disk full",
    }
    assert (await report(ui, fleet.beta_headers, fleet.beta, [failure]))["status"] == "success"
    database = Database(make_settings(**db_settings))
    try:
        async with database.session() as session:
            await session.execute(
                update(Node)
                .where(Node.id == fleet.beta)
                .values(last_seen_at=utcnow() - timedelta(hours=1))
            )
    finally:
        await database.dispose()

    page = await ui.get("/ui/fleet/nodes")
    assert page.status_code == 200
    alpha = _row(page.text, "data-node", fleet.alpha)
    assert alpha.lstrip().startswith(f'<td>alpha <code class="muted">{fleet.alpha}</code>')
    assert "alpha&#39;s NAS" in alpha  # the description
    assert 'data-testid="rescued">2<' in alpha
    assert 'data-testid="failed" class="">0<' in alpha
    assert 'data-testid="bytes">4.0 MB<' in alpha
    assert 'data-testid="per-hour">4.0 MB/h<' in alpha
    assert 'data-testid="per-day">4.0 MB/day<' in alpha
    assert "<td>1 / 8</td>" in alpha  # holds the bare asset's copy
    assert 'data-testid="free" title="10239 MB">10.0 GB<' in alpha  # 10 GB free, 1 MB held
    assert 'data-testid="silent"' not in alpha
    beta = _row(page.text, "data-node", fleet.beta)
    assert f'<td>beta <code class="muted">{fleet.beta}</code>' in beta
    assert 'data-testid="rescued">1<' in beta
    assert 'data-testid="failed" class="down">1<' in beta
    assert 'data-testid="bytes">1.0 MB<' in beta
    assert 'data-testid="silent"' in beta
    assert _count((await ui.get("/ui/fleet")).text, "silent") == "1"


# Pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (None, "—"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KB"),
        (MIB - 1, "1.0 MB"),
        (5 * MIB, "5.0 MB"),
        (3 * 1024**3 // 2, "1.5 GB"),
        (2048 * 1024**4, "2048.0 TB"),
    ],
)
def test_human_bytes(count: int | None, shown: str) -> None:
    assert human_bytes(count) == shown


def test_only_magnet_links_are_links() -> None:
    assert magnet_href(" magnet:?xt=urn:btih:ab ") == "magnet:?xt=urn:btih:ab"
    assert magnet_href("javascript:alert(1)") is None
    assert magnet_href(None) is None


def test_hour_buckets_count_the_last_hours_by_clock_hour() -> None:
    now = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    points = [
        (datetime(2024, 5, 1, 12, 5, tzinfo=UTC), 10),
        (datetime(2024, 5, 1, 12, 29, tzinfo=UTC), 5),
        (datetime(2024, 5, 1, 11, 59, tzinfo=UTC), 7),
        (datetime(2024, 5, 1, 10, 0, tzinfo=UTC), 1),  # the first bucket's start
        (datetime(2024, 5, 1, 9, 59, tzinfo=UTC), 100),  # before it: left out
        (datetime(2024, 5, 1, 12, 31, tzinfo=UTC), 2),  # a clock ahead: the last bucket
    ]
    buckets = hour_buckets(points, now, hours=3)
    assert buckets == [
        (datetime(2024, 5, 1, 10, tzinfo=UTC), 1),
        (datetime(2024, 5, 1, 11, tzinfo=UTC), 7),
        (datetime(2024, 5, 1, 12, tzinfo=UTC), 17),
    ]
    assert len(hour_buckets([], now)) == 24


def test_bars_scale_to_the_largest_value() -> None:
    chart = columns([("a", "a", 0), ("b", "b", 50), ("c", "c", 100)])
    assert (chart.peak, chart.total) == (100, 150)
    low, half, full = chart.bars
    assert low.height == 0
    assert full.height == chart.bottom - chart.top
    assert half.height == pytest.approx(full.height / 2, abs=0.1)
    assert full.y == chart.top
    assert low.x < half.x < full.x
    across = rows([("n1", "alpha", 4), ("n2", "beta", 1)])
    assert across.bars[0].width == across.right - across.left
    assert across.bars[1].width == pytest.approx(across.bars[0].width / 4, abs=0.1)
    assert across.bars[0].y < across.bars[1].y
    assert columns([]).bars == []
