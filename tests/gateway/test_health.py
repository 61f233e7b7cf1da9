"""Health checks (manual and scheduled), breakers fed by probes, alerts by real SMTP and webhook."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from standardwebhooks.webhooks import Webhook

from dispatch.demo.mail import Mailbox
from tests.gateway.conftest import ADMIN, V1, Gateway
from tests.gateway.sink import Sink

PAYLOAD = {"ref": "r-1", "scope": "prod"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _until(predicate: Any, seconds: float = 15) -> None:
    async with asyncio.timeout(seconds):
        while not await predicate():  # noqa: ASYNC110 (polling the API is the test)
            await asyncio.sleep(0.05)


async def test_manual_checks_simple_and_actual(gateway: Gateway, sink: Sink) -> None:
    tcp = await gateway.resource("tcp", sink.url("x"))
    check = await gateway.http.post(f"{V1}/resources/{tcp['id']}/check", headers=ADMIN)
    assert check.status_code == 200, check.text
    assert check.json()["success"] is True
    assert check.json()["request_id"] == check.headers["x-request-id"]

    dead = await gateway.resource("dead", f"http://127.0.0.1:{_closed_port()}/")
    failed = (await gateway.http.post(f"{V1}/resources/{dead['id']}/check", headers=ADMIN)).json()
    assert failed["success"] is False
    assert "Connection" in failed["detail"] or "refused" in failed["detail"].lower()

    values = {"text": "hello {resource_name} at {datetime}", "to": "0800", "copy": "{param:to}"}
    actual = await gateway.resource(
        "actual", sink.url("probe"), health_check_method="actual", health_check_test_values=values
    )
    result = (await gateway.http.post(f"{V1}/resources/{actual['id']}/check", headers=ADMIN)).json()
    assert result["success"] is True
    body = sink.at("probe")[0].json()
    assert body["text"].startswith("hello actual at 20")
    assert body["copy"] == "0800"
    assert sink.at("probe")[0].headers["X-Health-Check"] == "1"

    history = await gateway.http.get(f"{V1}/resources/{actual['id']}/health", headers=ADMIN)
    (entry,) = history.json()
    assert entry["manual"] is True
    assert entry["success"] is True
    assert entry["method"] == "actual"


async def test_probes_open_and_close_the_breaker_and_alert_once(
    gateway: Gateway, sink: Sink, smtp: tuple[Mailbox, int]
) -> None:
    box, port = smtp
    settings = {
        "smtp_server": "127.0.0.1",
        "smtp_port": port,
        "smtp_encryption": "none",
        "email_from": "gateway@example.test",
        "smtp_password": "s3cret",
    }
    put = await gateway.http.put(f"{V1}/settings", json=settings, headers=ADMIN)
    assert put.status_code == 200, put.text
    assert put.json()["smtp_password"] != "s3cret"
    sink.set("api", status=500)
    resource = await gateway.resource(
        "payments",
        sink.url("api"),
        health_check_method="actual",
        unhealthy_threshold=2,
        healthy_threshold=2,
        send_failure_email=True,
        notification_email="ops@example.test, oncall@example.test",
        send_failure_webhook=True,
        failure_webhook_url=sink.url("alerts"),
        failure_webhook_payload={"text": "{resource_name} is {state}", "why": "{reason}"},
    )
    check = f"{V1}/resources/{resource['id']}/check"
    for _ in range(4):  # two failures open it; more failures are no news
        await gateway.http.post(check, headers=ADMIN)
    state = (await gateway.http.get(f"{V1}/resources/{resource['id']}", headers=ADMIN)).json()
    assert state["breaker"]["state"] == "open"

    await sink.wait_for(1, "alerts")
    await _until(lambda: _have(box, 1))
    (mail,) = box.messages
    assert mail["Subject"] == 'Dispatchapy Alert: Resource "payments" is DOWN'
    assert mail["To"] == "ops@example.test, oncall@example.test"
    assert "payments" in mail.get_payload()
    alert = sink.at("alerts")[0]
    assert alert.json() == {"text": "payments is down", "why": "probe: 2 consecutive failures"}
    Webhook(resource["signing_secret_full"]).verify(alert.body, alert.headers)

    sink.set("api", status=200)
    for _ in range(2):
        await gateway.http.post(check, headers=ADMIN)
    state = (await gateway.http.get(f"{V1}/resources/{resource['id']}", headers=ADMIN)).json()
    assert state["breaker"]["state"] == "closed"
    await sink.wait_for(2, "alerts")
    await _until(lambda: _have(box, 2))
    assert "UP" in box.messages[1]["Subject"]
    assert sink.at("alerts")[1].json()["text"] == "payments is up"
    await asyncio.sleep(0.3)
    assert len(sink.at("alerts")) == 2  # one alert per state change, no more


async def _have(box: Mailbox, count: int) -> bool:
    return len(box.messages) >= count


async def test_failed_deliveries_alert_through_the_breaker(gateway: Gateway, sink: Sink) -> None:
    sink.set("primary", status=503)
    primary = await gateway.resource(
        "primary",
        sink.url("primary"),
        send_failure_webhook=True,
        failure_webhook_url=sink.url("hook"),
    )
    backup = await gateway.resource("backup", sink.url("backup"))
    endpoint = await gateway.endpoint("notify", [primary["id"], backup["id"]])
    token = (await gateway.client("acme", [endpoint["id"]]))["token"]
    for _ in range(3):
        await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    await sink.wait_for(1, "hook")
    alert = sink.at("hook")[0].json()
    assert alert["event"] == "resource.down"
    assert alert["resource"] == "primary"
    await asyncio.sleep(0.3)
    assert len(sink.at("hook")) == 1


async def test_scheduled_checks_run_and_are_kept(gateway: Gateway, sink: Sink) -> None:
    resource = await gateway.resource(
        "watched",
        sink.url("x"),
        health_check_enabled=True,
        health_check_interval_min=60,
        health_check_interval_max=90,
    )
    url = f"{V1}/resources/{resource['id']}/health"

    async def checked() -> bool:
        return bool((await gateway.http.get(url, headers=ADMIN)).json())

    await _until(checked, seconds=20)  # the sweep runs every 5 s; a new resource is due at once
    (entry,) = (await gateway.http.get(url, headers=ADMIN)).json()
    assert entry["manual"] is False
    assert entry["success"] is True
    shown = (await gateway.http.get(f"{V1}/resources/{resource['id']}", headers=ADMIN)).json()
    assert shown["latest_health_check_result"]["success"] is True
    assert shown["next_health_check_at"] > shown["last_checked_at"]


async def test_smtp_test_connection(gateway: Gateway, smtp: tuple[Mailbox, int]) -> None:
    _, port = smtp
    unset = await gateway.http.post(f"{V1}/settings/test-smtp", headers=ADMIN)
    assert unset.status_code == 400
    await gateway.http.put(
        f"{V1}/settings",
        json={"smtp_server": "127.0.0.1", "smtp_port": port, "smtp_encryption": "none"},
        headers=ADMIN,
    )
    ok = await gateway.http.post(f"{V1}/settings/test-smtp", headers=ADMIN)
    assert ok.json()["success"] is True
    await gateway.http.put(f"{V1}/settings", json={"smtp_port": _closed_port()}, headers=ADMIN)
    down = await gateway.http.post(f"{V1}/settings/test-smtp", headers=ADMIN)
    assert down.json()["success"] is False
