"""Seed 004's data rescue on the queue's node leases: imports, dispatch, reports, monitoring."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatch.config import Settings
from dispatch.demo.serving import ThreadedServer
from tests.support import admin_headers, make_settings, running_app

ADMIN = admin_headers()
R = "/api/v1/rescue"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "fleet"
RANKING = json.loads((FIXTURES / "ranker_mock.json").read_text())


def asset(n: int, size_mb: float | None = 10, priority: int = 5, **extra: Any) -> dict[str, Any]:
    return {
        "ds_id": f"ds-{n}",
        "res_id": n,
        "name": f"Dataset {n}",
        "path": f"data/{n}.csv",
        "url": f"https://data.example.org/{n}.csv",
        "size_mb": size_mb,
        "priority": priority,
        **extra,
    }


@pytest.fixture
def fleet_settings(db_settings: dict[str, Any]) -> Settings:
    return make_settings(**db_settings, rescue_node_daily_assets=0)


@pytest.fixture
async def http(fleet_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(fleet_settings) as client:
        yield client


async def register(
    http: httpx.AsyncClient, name: str, free_gb: float = 100
) -> tuple[str, dict[str, str]]:
    response = await http.post(
        f"{R}/nodes",
        json={"name": name, "description": f"{name}'s NAS", "free_space_gb": free_gb},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["token"].startswith("dnode_")
    return body["node_id"], {"X-Node-Token": body["token"]}


async def load(http: httpx.AsyncClient, items: Any) -> dict[str, Any]:
    response = await http.post(f"{R}/assets", json=items, headers=ADMIN)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def ask(
    http: httpx.AsyncClient, headers: dict[str, str], free_gb: float, **extra: Any
) -> list[dict[str, Any]]:
    body = {"name": "n", "description": "", "free_space_gb": free_gb, **extra}
    response = await http.post(f"{R}/dispatch", json=body, headers=headers)
    if response.status_code == 204:
        return []
    assert response.status_code == 200, response.text
    assets: list[dict[str, Any]] = response.json()["asset"]
    return assets


def done(item: dict[str, Any], magnet: str = "magnet:?xt=urn:btih:abc123") -> dict[str, Any]:
    return {
        "asset_id": item["asset_id"],
        "job_id": item["job_id"],
        "lease_token": item["lease_token"],
        "url": item["url"],
        "magnet_link": magnet,
        "status": "SUCCESS",
        "bytes": 1234,
    }


async def report(
    http: httpx.AsyncClient, headers: dict[str, str], node: str, items: list[dict[str, Any]]
) -> dict[str, Any]:
    response = await http.post(
        f"{R}/assets-downloaded",
        json={"rescuer_id": node, "message": "done", "assets": items},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_the_seeds_ranking_imports_as_is_and_dispatch_answers_in_its_shape(
    http: httpx.AsyncClient,
) -> None:
    imported = await load(http, RANKING)
    assert (imported["created"], imported["copies_added"]) == (3, 6)  # two copies each
    node, headers = await register(http, "alpha")
    body = {"name": "alpha", "description": "a NAS", "free_space_gb": 1, "node_id": node}
    response = await http.post(f"{R}/dispatch", json=body, headers=headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "success"
    assert answer["message"] == "Request received and processed"
    assert answer["received_data"] == body
    # Priority first, then within the free gigabyte: the two priority-1 files (4.5 + 16.2 MB)
    # and the 156 MB magnet; UUID ids come back as given (the seed's model 500'd on them).
    names = [item["name"] for item in answer["asset"]]
    assert names[:2] == [RANKING["asset"][0]["name"], RANKING["asset"][1]["name"]]
    first = answer["asset"][0]
    for key in ("ds_id", "res_id", "name", "path", "url", "size_mb", "priority"):
        assert first[key] == RANKING["asset"][0][key]
    assert first["lease_token"]
    assert first["lease_expires_at"]
    assert first["job_id"]
    assert answer["allocated_size_mb"] == sum(
        math.ceil(item["size_mb"]) for item in answer["asset"]
    )

    # The legacy path answers the same shape, and the seed's 422 when nothing is left.
    legacy = await http.post("/dispatch", json=body, headers=headers)
    assert legacy.status_code == 422
    assert legacy.json()["error"]["message"] == "No available assets matching the criteria"
    again = await http.post(f"{R}/dispatch", json=body, headers=headers)
    assert again.status_code == 204
    assert int(again.headers["retry-after"]) >= 1


async def test_assignments_fit_free_space_with_unknown_sizes_counted_conservatively(
    db_settings: dict[str, Any],
) -> None:
    settings = make_settings(
        **db_settings, rescue_unknown_size_mb=500, rescue_node_max_in_flight=100
    )
    async with running_app(settings) as http:
        sizes: list[float | None] = [300, 250, None, 100, 90, 400, None, 60, 10, 5]
        await load(http, [asset(n, size, priority=n) for n, size in enumerate(sizes)])
        _node, headers = await register(http, "small")
        got = await ask(http, headers, free_gb=1)  # 1,024 MB free
        counted = [item["size_mb"] if item["size_mb"] is not None else 500 for item in got]
        assert sum(counted) <= 1024
        assert [item["asset_id"] for item in got]  # greedy first fit, in priority order
        assert len({item["asset_id"] for item in got}) == len(got)
        # What the node holds counts against what it reports free next time.
        more = await ask(http, headers, free_gb=0.1)  # 102 MB more
        assert sum(item["size_mb"] or 500 for item in more) <= 102
        assert not {item["asset_id"] for item in more} & {item["asset_id"] for item in got}
        assert await ask(http, headers, free_gb=0) == []


async def test_three_nodes_reach_the_replication_target_never_twice_on_one_node(
    http: httpx.AsyncClient,
) -> None:
    await load(http, [asset(n, size_mb=1, priority=n) for n in range(6)])
    nodes = [await register(http, name) for name in ("a", "b", "c")]
    held: dict[str, set[int]] = {}
    for _ in range(3):  # each node asks until nothing is left for it
        for node, headers in nodes:
            got = await ask(http, headers, free_gb=50)
            ids = [item["asset_id"] for item in got]
            assert len(ids) == len(set(ids))  # one copy of an asset per answer
            assert not set(ids) & held.get(node, set())  # and never one it already has
            held.setdefault(node, set()).update(ids)
            if got:
                result = await report(http, headers, node, [done(item) for item in got])
                assert result["status"] == "success", result
    overview = (await http.get(f"{R}/overview", headers=ADMIN)).json()
    assert overview["copies_rescued"] == 12  # 6 assets x 2 copies
    assert overview["assets_complete"] == 6
    assert overview["assets_at_risk"] == 0
    listed = (await http.get(f"{R}/assets", headers=ADMIN)).json()
    assert all(len(item["nodes"]) == 2 for item in listed)  # two distinct nodes each
    assert sum(len(ids) for ids in held.values()) == 12


async def test_reports_are_idempotent_per_asset_and_refuse_stale_leases(
    http: httpx.AsyncClient,
) -> None:
    await load(http, [asset(1, checksum="sha256:" + "ab" * 32), asset(2), asset(3)])
    node, headers = await register(http, "alpha")
    other, other_headers = await register(http, "beta")
    got = await ask(http, headers, free_gb=10)
    by_id = {item["asset_id"]: item for item in got}
    first, second, third = by_id[1], by_id[2], by_id[3]

    items = [
        done(first) | {"checksum": "sha256:" + "ab" * 32},
        done(second) | {"lease_token": "0" * 32},  # stale
        done(third) | {"url": "https://elsewhere.example/x"},  # not this asset's URL
        done(third) | {"magnet_link": "not a magnet"},
        {
            "asset_id": 999,
            "lease_token": "x",
            "status": "SUCCESS",
            "magnet_link": "magnet:?xt=urn:btih:1",
        },
    ]
    result = await report(http, headers, node, items)
    outcomes = [(row["index"], row["outcome"]) for row in result["results"]]
    assert outcomes == [
        (0, "recorded"),
        (1, "rejected"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "rejected"),
    ]
    assert "stale lease" in result["results"][1]["reason"]
    assert result["status"] == "partial"
    assert len(result["inserted_rescues"]) == 1
    assert len(result["not_committed_rescues"]) == 4
    assert result["inserted_rescues"][0] == {
        "asset_id": 1,
        "rescuer_id": node,
        "magnet_link": "magnet:?xt=urn:btih:abc123",
        "status": "success",
    }
    # The same report again changes nothing and says so.
    again = await report(http, headers, node, [items[0]])
    assert again["results"][0]["outcome"] == "already_recorded"
    assert again["updated_rescues"][0]["asset_id"] == 1
    # Another node cannot report this node's copy, and a token of another node is refused.
    stolen = await report(http, other_headers, other, [done(second)])
    assert stolen["results"][0]["outcome"] == "rejected"
    refused = await http.post(
        f"{R}/assets-downloaded",
        json={"rescuer_id": node, "assets": [done(second)]},
        headers=other_headers,
    )
    assert refused.status_code == 403
    # A failure frees the copy for another node, never for this one again.
    failed = await report(
        http, headers, node, [done(second) | {"status": "FAIL", "message": "404 upstream"}]
    )
    assert failed["results"][0]["outcome"] == "failure_recorded"
    taken = await ask(http, other_headers, free_gb=10)
    assert 2 in {item["asset_id"] for item in taken}
    assert 2 not in {item["asset_id"] for item in await ask(http, headers, free_gb=10)}
    detail = (await http.get(f"{R}/assets/1", headers=ADMIN)).json()
    rescued = [copy for copy in detail["copies"] if copy["state"] == "rescued"]
    assert rescued[0]["node_id"] == node
    assert rescued[0]["bytes"] == 1234
    assert rescued[0]["checksum"] == "sha256:" + "ab" * 32


async def test_a_wrong_checksum_is_refused(http: httpx.AsyncClient) -> None:
    await load(http, [asset(1, checksum="sha256:" + "cd" * 32)])
    node, headers = await register(http, "alpha")
    [item] = await ask(http, headers, free_gb=10)
    result = await report(http, headers, node, [done(item) | {"checksum": "sha256:" + "00" * 32}])
    assert result["results"][0]["outcome"] == "rejected"
    assert "checksum" in result["results"][0]["reason"]


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "javascript:alert(1)",
        "http://",
        "https://exa mple.org/x",
        "magnet:?xt=urn:btih:" + "a" * 41,
        "magnet:?dn=nothing",
        "file:///etc/passwd",
        "http://example.org:99999/x",
    ],
)
async def test_malformed_urls_get_422_and_nothing_is_imported(
    http: httpx.AsyncClient, url: str
) -> None:
    response = await http.post(f"{R}/assets", json=[asset(1), asset(2, url=url)], headers=ADMIN)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["details"]["refused"][0]["index"] == 1
    assert error["details"]["refused"][0]["errors"][0]["loc"] == ["url"]
    assert (await http.get(f"{R}/assets", headers=ADMIN)).json() == []


async def test_good_urls_ids_as_strings_or_integers_and_bad_bodies(http: httpx.AsyncClient) -> None:
    good = [
        asset(1, url="ftp://ftp.example.org/pub/x.nc"),
        asset(2, url="magnet:?xt=urn:btih:dd8255ecdc7ca55fb0bbf81323d87062db1f6d1c&dn=x"),
        asset(3, url="http://127.0.0.1:8080/x"),
        {**asset(4), "ds_id": 42, "res_id": "r-4"},
    ]
    assert (await load(http, {"asset": good}))["created"] == 4
    # Re-importing updates in place (same dataset and resource ids), without new copies.
    again = await load(http, [{**asset(1, url="ftp://ftp.example.org/pub/x.nc"), "priority": 1}])
    assert (again["created"], again["updated"], again["copies_added"]) == (0, 1, 0)
    for body in ["{", '{"nothing": 1}', "[]"]:
        response = await http.post(
            f"{R}/assets", content=body, headers=ADMIN | {"content-type": "application/json"}
        )
        assert response.status_code == 422, body
    read_only = await http.post(f"{R}/assets", json=[asset(9)])
    assert read_only.status_code == 401


async def test_csv_upload(http: httpx.AsyncClient) -> None:
    text = (
        "ds_id,res_id,name,path,url,size_mb,priority,checksum\n"
        "d1,r1,One,a/1,https://x.example/1,1.5,2,sha256:" + "aa" * 32 + "\n"
        "d2,r2,Two,a/2,https://x.example/2,,3,\n"
    )
    response = await http.post(
        f"{R}/assets/csv", content=text, headers=ADMIN | {"content-type": "text/csv"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["created"] == 2
    listed = {item["name"]: item for item in (await http.get(f"{R}/assets", headers=ADMIN)).json()}
    assert listed["Two"]["size_mb"] is None
    assert listed["One"]["checksum"].startswith("sha256:")
    bad = await http.post(
        f"{R}/assets/csv",
        content="ds_id,res_id,name,url\nd3,r3,Three,ftp:/broken\n",
        headers=ADMIN | {"content-type": "text/csv"},
    )
    assert bad.status_code == 422


class Priorizer(ThreadedServer):
    """Seed 004's priorizer: ``POST /ranking``; it can be taken down."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        self.down = False
        self.calls = 0

        async def ranking(request: Request) -> JSONResponse:
            self.calls += 1
            if self.down:
                return JSONResponse({"detail": "down"}, status_code=503)
            return JSONResponse(RANKING | {"asset": [*RANKING["asset"], {"name": "broken"}]})

        super().__init__(Starlette(routes=[Route("/ranking", ranking, methods=["POST"])]))


async def test_the_priorizer_ranking_and_its_cache(db_settings: dict[str, Any]) -> None:
    priorizer = Priorizer()
    priorizer.start()
    try:
        settings = make_settings(**db_settings, priorizer_url=priorizer.url)
        async with running_app(settings) as http:
            first = await http.post(f"{R}/assets/import", headers=ADMIN)
            assert first.status_code == 200, first.text
            assert (first.json()["source"], first.json()["created"]) == ("priorizer", 3)
            assert len(first.json()["refused"]) == 1  # skipped, as the seed did
            priorizer.down = True
            cached = await http.post(f"{R}/assets/import", headers=ADMIN)
            assert cached.status_code == 200, cached.text
            assert cached.json()["source"] == "cache"
            assert cached.json()["unchanged"] == 3
            assert priorizer.calls == 2
    finally:
        priorizer.stop()


async def test_a_killed_nodes_copies_go_to_another_node(db_settings: dict[str, Any]) -> None:
    settings = make_settings(
        **db_settings,
        worker_enabled=True,
        worker_poll_interval_seconds=0.1,
        queue_upkeep_interval_seconds=0.2,
        node_lease_seconds=5,
        node_silent_seconds=5,
        rescue_replication_target=1,
        rescue_node_daily_assets=0,
        sync_schedule="",
    )
    async with running_app(settings) as http:
        ids = set((await load(http, [asset(n, size_mb=1) for n in range(4)]))["asset_ids"])
        dead, dead_headers = await register(http, "dead")
        alive, alive_headers = await register(http, "alive")
        taken = {item["asset_id"] for item in await ask(http, dead_headers, free_gb=10)}
        assert taken == ids
        assert await ask(http, alive_headers, free_gb=10) == []
        # "dead" never heartbeats again; "alive" keeps asking.
        async with asyncio.timeout(30):
            while True:
                moved = await ask(http, alive_headers, free_gb=10)
                if moved:
                    break
                await asyncio.sleep(0.5)
        later = {item["asset_id"] for item in moved}
        assert later == taken
        nodes = {
            row["node_id"]: row for row in (await http.get(f"{R}/nodes", headers=ADMIN)).json()
        }
        assert nodes[dead]["silent"] is True
        assert nodes[dead]["in_flight"] == 0
        assert nodes[alive]["in_flight"] == 4


async def test_seed_clients_with_a_key_and_a_node_id_and_daily_caps(
    db_settings: dict[str, Any],
) -> None:
    settings = make_settings(**db_settings, rescue_node_daily_assets=2)
    async with running_app(settings) as http:
        await load(http, [asset(n, size_mb=1) for n in range(5)])
        body = {"name": "legacy", "description": "seed client", "free_space_gb": 10, "node_id": 7}
        first = await http.post("/dispatch", json=body, headers=ADMIN)
        assert first.status_code == 200, first.text
        assert first.json()["node_id"] == "7"
        assert len(first.json()["asset"]) == 2  # the daily cap
        capped = await http.post("/dispatch", json=body, headers=ADMIN)
        assert capped.status_code == 422
        anonymous = await http.post("/dispatch", json=body)
        assert anonymous.status_code == 401
        missing = await http.post("/dispatch", json={"free_space_gb": 1}, headers=ADMIN)
        assert missing.status_code == 422
        for bad in ({"free_space_gb": -1, "node_id": "x"}, {"node_id": "x"}):
            assert (await http.post("/dispatch", json=bad, headers=ADMIN)).status_code == 422


async def test_free_space_beyond_a_petabyte_is_a_422_not_an_overflow(
    http: httpx.AsyncClient,
) -> None:
    # 1e308 GB in megabytes is an infinite float: flooring it used to raise a 500.
    for path in ("/dispatch", f"{R}/dispatch"):
        body = {"free_space_gb": 1.3e308, "node_id": "huge"}
        response = await http.post(path, json=body, headers=ADMIN)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == "free_space_gb"
    largest = {"free_space_gb": 1_000_000, "node_id": "petabyte"}
    answered = await http.post("/dispatch", json=largest, headers=ADMIN)
    assert answered.status_code == 422  # in range: refused only because no asset is loaded
    assert answered.json()["error"]["message"] == "No available assets matching the criteria"


async def test_nodes_get_different_assets_before_anyone_gets_a_second_copy(
    http: httpx.AsyncClient,
) -> None:
    ids = (await load(http, [asset(n, size_mb=1, priority=3) for n in range(4)]))["asset_ids"]
    (_, first), (_, second) = await register(http, "a"), await register(http, "b")
    got_a = [item["asset_id"] for item in await ask(http, first, free_gb=10, limit=2)]
    got_b = [item["asset_id"] for item in await ask(http, second, free_gb=10, limit=2)]
    assert sorted(got_a + got_b) == sorted(ids)  # four nodes' worth of distinct assets
    assert [item["replica"] for item in await ask(http, first, free_gb=10, limit=1)] == [2]


async def test_a_reimport_reorders_waiting_copies(http: httpx.AsyncClient) -> None:
    ids = (await load(http, [asset(1, priority=5), asset(2, priority=6)]))["asset_ids"]
    await load(http, [asset(2, priority=1)])  # now the most urgent
    _, headers = await register(http, "a")
    got = await ask(http, headers, free_gb=10, limit=1)
    assert [item["asset_id"] for item in got] == [ids[1]]
    assert got[0]["priority"] == 1


async def test_ten_thousand_assets_import_in_one_request(db_settings: dict[str, Any]) -> None:
    settings = make_settings(**db_settings, max_request_body_bytes=8 * 1_048_576)
    async with running_app(settings) as http:
        items = [asset(n) for n in range(10_000)]
        first = await load(http, items)
        assert (first["created"], first["copies_added"]) == (10_000, 20_000)
        again = await load(http, [*items[:5_000], asset(10_000)])
        assert (again["created"], again["unchanged"], again["copies_added"]) == (1, 5_000, 2)


async def test_one_node_polling_concurrently_never_gets_more_than_its_slots(
    http: httpx.AsyncClient,
) -> None:
    """The node's row is locked before what it holds is read: twelve polls at once of one
    node with three slots hand out three copies in all, each once."""
    await load(http, [asset(n, size_mb=1) for n in range(20)])
    response = await http.post(
        f"{R}/nodes",
        json={"name": "greedy", "free_space_gb": 100, "max_in_flight": 3},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    headers = {"X-Node-Token": response.json()["token"]}
    answers = await asyncio.gather(*(ask(http, headers, free_gb=100) for _ in range(12)))
    handed = [item["job_id"] for answer in answers for item in answer]
    assert len(handed) == len(set(handed)) == 3
    assert await ask(http, headers, free_gb=100) == []
    assets = [item["asset_id"] for answer in answers for item in answer]
    assert len(set(assets)) == 3  # never two copies of one asset on one node
