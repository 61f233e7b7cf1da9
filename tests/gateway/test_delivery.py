"""Delivery end to end: ingress → task → queue job → real HTTP sink, failover and retries."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime

from standardwebhooks.webhooks import Webhook

from tests.gateway.conftest import ADMIN, V1, Gateway
from tests.gateway.sink import Sink

PAYLOAD = {"ref": "req-987654", "scope": "production", "event_id": "evt_abc123", "user_id": 42}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens here once the socket is closed: connections are refused


async def test_a_task_is_delivered_signed_and_mapped(gateway: Gateway, sink: Sink) -> None:
    endpoint, (resource,), token = await gateway.setup(sink, ["primary"])
    rules = {
        "mapping": [
            {
                "resource_id": resource["id"],
                "target_key": "user.id",
                "source_type": "from_source",
                "source_value": "user_id",
            },
            {
                "resource_id": resource["id"],
                "target_key": "kind",
                "source_type": "constant",
                "source_value": "login",
            },
            {
                "resource_id": resource["id"],
                "target_key": "label",
                "source_type": "template",
                "source_value": "{ref}/{scope}",
            },
        ]
    }
    put = await gateway.http.put(
        f"{V1}/endpoints/{endpoint['id']}/rules", json=rules, headers=ADMIN
    )
    assert put.status_code == 200, put.text

    response = await gateway.send("notify", token, PAYLOAD)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    task = await gateway.settled(response.json()["task_id"])

    assert task["status"] == "success"
    (request,) = sink.at("primary")
    assert request.json() == {"user": {"id": 42}, "kind": "login", "label": "req-987654/production"}
    assert "_raw" not in request.json()
    secret = (
        await gateway.http.get(f"{V1}/resources/{resource['id']}/secret", headers=ADMIN)
    ).json()
    verified = Webhook(secret["signing_secret"]).verify(request.body, request.headers)
    assert verified == request.json()
    assert request.headers["webhook-id"] == task["message_id"]
    assert request.headers["Idempotency-Key"] == task["message_id"]
    assert task["target_payload"] == request.json()
    assert [a["outcome"] for a in task["attempt_log"]] == ["success"]


async def test_without_rules_the_payload_passes_through(gateway: Gateway, sink: Sink) -> None:
    _, _, token = await gateway.setup(sink, ["primary"])
    task_id = (await gateway.send("notify", token, PAYLOAD)).json()["task_id"]
    await gateway.settled(task_id)
    assert sink.at("primary")[0].json() == PAYLOAD


async def test_failover_when_the_primary_answers_500(gateway: Gateway, sink: Sink) -> None:
    sink.set("primary", status=500, body="boom")
    _, _, token = await gateway.setup(sink, ["primary", "backup"])
    task = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])

    assert task["status"] == "success"
    assert task["resource_name"] == "r-backup"
    hops = task["attempt_log"]
    assert [(h["resource_name"], h["outcome"], h["status_code"]) for h in hops] == [
        ("r-primary", "retryable", 500),
        ("r-backup", "success", 200),
    ]
    assert hops[0]["response_body"] == "boom"
    primary, backup = sink.at("primary")[0], sink.at("backup")[0]
    # The receiver's dedupe key is the same on every hop; each hop is signed afresh.
    assert primary.headers["webhook-id"] == backup.headers["webhook-id"]
    metrics = (await gateway.http.get("/metrics", headers=ADMIN)).text
    assert "dispatch_gateway_failovers_total 1.0" in metrics
    requests = "dispatch_gateway_requests_total"
    assert f'{requests}{{outcome="retryable",resource="r-primary"}} 1.0' in metrics
    assert f'{requests}{{outcome="success",resource="r-backup"}} 1.0' in metrics
    assert 'dispatch_gateway_tasks{status="success"} 1.0' in metrics
    assert 'dispatch_gateway_ingested_total{result="queued"} 1.0' in metrics
    assert 'dispatch_gateway_breaker_state{resource="r-primary",state="closed"} 1.0' in metrics


async def test_failover_when_the_primary_times_out(gateway: Gateway, sink: Sink) -> None:
    sink.set("primary", delay=5)
    _, resources, token = await gateway.setup(sink, ["primary", "backup"])
    patch = await gateway.http.patch(
        f"{V1}/resources/{resources[0]['id']}", json={"timeout_seconds": 0.3}, headers=ADMIN
    )
    assert patch.status_code == 200
    task = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    assert task["resource_name"] == "r-backup"
    assert "timed out" in task["attempt_log"][0]["error"]


async def test_failover_when_the_primary_refuses_connections(gateway: Gateway, sink: Sink) -> None:
    dead = await gateway.resource("dead", f"http://127.0.0.1:{_closed_port()}/hook")
    backup = await gateway.resource("backup", sink.url("backup"))
    endpoint = await gateway.endpoint("notify", [dead["id"], backup["id"]])
    token = (await gateway.client("acme", [endpoint["id"]]))["token"]
    task = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    assert task["status"] == "success"
    assert task["attempt_log"][0]["outcome"] == "retryable"
    assert task["attempt_log"][1]["resource_name"] == "backup"


async def test_a_4xx_is_permanent_for_that_resource_only(gateway: Gateway, sink: Sink) -> None:
    sink.set("primary", status=422)
    sink.set("backup", status=400)
    _, _, token = await gateway.setup(sink, ["primary", "backup"])
    task = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    # Both refused the request itself: retrying cannot help, so the task fails at once.
    assert task["status"] == "failed"
    assert task["last_error"].startswith("Permanent failure")
    assert len(sink.at("primary")) == 1
    assert len(sink.at("backup")) == 1


async def test_retries_with_backoff_until_it_succeeds(gateway: Gateway, sink: Sink) -> None:
    sink.set("only", script=[503, 503], status=200)
    _, _, token = await gateway.setup(sink, ["only"])
    task = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    assert task["status"] == "success"
    assert [a["attempt"] for a in task["attempt_log"]] == [1, 2, 3]
    ids = {r.headers["webhook-id"] for r in sink.at("only")}
    stamps = [int(r.headers["webhook-timestamp"]) for r in sink.at("only")]
    assert ids == {task["message_id"]}
    assert stamps == sorted(stamps)


async def test_exhausted_attempts_end_failed(gateway: Gateway, sink: Sink) -> None:
    sink.set("only", status=502)
    _, _, token = await gateway.setup(sink, ["only"], max_attempts=2)
    task = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    assert task["status"] == "failed"
    assert task["last_error"].startswith("Max retries reached")
    assert len(sink.at("only")) == 2


async def test_retry_after_is_honoured(gateway: Gateway, sink: Sink) -> None:
    sink.set("only", script=[429], status=200, headers={"Retry-After": "1"})
    _, _, token = await gateway.setup(sink, ["only"])
    task = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    first, second = task["attempt_log"]
    waited = datetime.fromisoformat(second["started_at"]) - datetime.fromisoformat(
        first["started_at"]
    )
    # Backoff alone would retry after about 0.2 s; the resource asked for 1 s.
    assert waited.total_seconds() >= 0.95


async def test_410_disables_the_resource(gateway: Gateway, sink: Sink) -> None:
    sink.set("primary", status=410)
    _, resources, token = await gateway.setup(sink, ["primary", "backup"])
    task = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    assert task["resource_name"] == "r-backup"
    primary = (await gateway.http.get(f"{V1}/resources/{resources[0]['id']}", headers=ADMIN)).json()
    assert primary["is_active"] is False
    assert "410" in primary["disabled_reason"]
    task2 = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    assert [a["resource_name"] for a in task2["attempt_log"]] == ["r-backup"]
    assert len(sink.at("primary")) == 1


async def test_the_breaker_opens_then_fails_back(gateway: Gateway, sink: Sink) -> None:
    sink.set("primary", status=500)
    _, resources, token = await gateway.setup(sink, ["primary", "backup"])
    for _ in range(2):  # GATEWAY_BREAKER_FAILURES=2 in these tests
        await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    primary = (await gateway.http.get(f"{V1}/resources/{resources[0]['id']}", headers=ADMIN)).json()
    assert primary["breaker"]["state"] == "open"
    assert primary["healthy"] is False

    # Open: the next task goes straight to the backup, the primary sees nothing.
    task = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    assert [a["resource_name"] for a in task["attempt_log"]] == ["r-backup"]
    assert len(sink.at("primary")) == 2

    # The primary recovers; after the cool-down a trial request closes the breaker again.
    sink.set("primary", status=200)
    await asyncio.sleep(0.7)
    task = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    assert task["resource_name"] == "r-primary"
    primary = (await gateway.http.get(f"{V1}/resources/{resources[0]['id']}", headers=ADMIN)).json()
    assert primary["breaker"]["state"] == "closed"


async def test_when_every_breaker_is_open_one_is_still_tried(gateway: Gateway, sink: Sink) -> None:
    sink.set("only", status=500)
    _, _, token = await gateway.setup(sink, ["only"], max_attempts=1)
    for _ in range(2):
        await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    sink.set("only", status=200)
    task = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    assert task["status"] == "success"  # panic mode: the least recently failed is probed


async def test_ssrf_refuses_loopback_when_not_allowed(
    db_settings: dict[str, object], sink: Sink
) -> None:
    from tests.gateway.conftest import GATEWAY_TEST_SETTINGS
    from tests.support import make_settings, running_app

    values = {**GATEWAY_TEST_SETTINGS, "gateway_allowed_networks": []}
    async with running_app(make_settings(**db_settings, **values)) as http:
        gw = Gateway(http)
        by_ip = await gw.resource("by-ip", sink.url("a"))
        by_name = await gw.resource("by-name", f"http://localhost:{sink.port}/b")
        endpoint = await gw.endpoint("notify", [by_ip["id"], by_name["id"]])
        token = (await gw.client("acme", [endpoint["id"]]))["token"]
        task = await gw.settled((await gw.send("notify", token, PAYLOAD)).json()["task_id"])
    assert task["status"] == "failed"
    assert [a["outcome"] for a in task["attempt_log"]] == ["blocked", "blocked"]
    assert "GATEWAY_ALLOWED_NETWORKS" in task["attempt_log"][1]["error"]
    assert sink.received == []


async def test_a_resource_concurrency_limit_holds(gateway: Gateway, sink: Sink) -> None:
    sink.set("slow", delay=0.3)
    _, (resource,), token = await gateway.setup(sink, ["slow"])
    await gateway.http.patch(
        f"{V1}/resources/{resource['id']}", json={"concurrency_limit": 1}, headers=ADMIN
    )
    ids = [(await gateway.send("notify", token, PAYLOAD)).json()["task_id"] for _ in range(3)]
    for task_id in ids:
        assert (await gateway.settled(task_id))["status"] == "success"
    assert sink.max_in_flight == 1  # the worker runs 4 jobs at once; the resource saw one


async def test_a_resource_rate_limit_spaces_requests(gateway: Gateway, sink: Sink) -> None:
    _, (resource,), token = await gateway.setup(sink, ["a"])
    await gateway.http.patch(
        f"{V1}/resources/{resource['id']}", json={"rate_limit_per_second": 4}, headers=ADMIN
    )
    ids = [(await gateway.send("notify", token, PAYLOAD)).json()["task_id"] for _ in range(8)]
    for task_id in ids:
        await gateway.settled(task_id)
    arrivals = sorted(r.at for r in sink.at("a"))
    # A burst of 4, then one every 0.25 s: 8 requests cannot fit in less than a second.
    assert arrivals[-1] - arrivals[0] >= 0.9
