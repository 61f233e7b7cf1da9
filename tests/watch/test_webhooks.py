"""Webhook alerts delivered through the gateway to a real sink: failover, signature, status."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from dispatch.db.engine import Database
from tests.gateway.sink import Sink
from tests.support import make_settings, running_app
from tests.watch.conftest import ADMIN, OFFLINE_PROVIDERS, V1, new_user
from tests.watch.test_evaluate import product, write


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    receiver = await Sink().start()
    yield receiver
    await receiver.stop()


@pytest.fixture
def live_settings(db_settings: dict[str, Any]) -> Any:
    return make_settings(
        **db_settings,
        **OFFLINE_PROVIDERS,
        worker_enabled=True,
        worker_poll_interval_seconds=0.1,
        gateway_allowed_networks=["127.0.0.0/8"],
        sync_schedule="",
    )


async def test_a_webhook_alert_fails_over_and_is_signed(live_settings: Any, sink: Sink) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/hook"
    async with running_app(live_settings) as http:
        alice = await new_user(http, "alice@example.com")
        preferences = {
            "notifications_email": False,
            "notifications_webhook": True,
            "webhook_urls": [dead, sink.url("alerts")],
        }
        patched = await http.patch(
            f"{V1}/me", json={"preferences": preferences}, headers=alice.headers
        )
        assert patched.status_code == 200, patched.text
        hook = (await http.get(f"{V1}/me/webhook", headers=alice.headers)).json()
        assert hook["enabled"] is True
        assert hook["urls"] == [dead, sink.url("alerts")]
        assert hook["signing_secret"].startswith("whsec_")
        rule = {"name": "dunks", "query": {"sources": ["goat"], "keywords": ["dunk"]}}
        assert (
            await http.post(f"{V1}/watch-rules", json=rule, headers=alice.headers)
        ).status_code == 201
        database = Database(live_settings)
        try:
            await write(database, product("a", "Nike Dunk Low"))
        finally:
            await database.dispose()
        await sink.wait_for(1, "alerts", seconds=20)
        (received,) = sink.at("alerts")
        verified = Webhook(hook["signing_secret"]).verify(received.body, received.headers)
        assert verified["type"] == "NEW_MATCH"
        assert verified["event"]["payload"]["listing"]["title"] == "Nike Dunk Low"
        async with asyncio.timeout(10):
            while True:  # the notification records the gateway task that delivered it
                rows = (
                    await http.get(
                        f"{V1}/notifications", params={"channel": "webhook"}, headers=alice.headers
                    )
                ).json()
                if rows and rows[0]["gateway_task_id"]:
                    break
                await asyncio.sleep(0.05)
        assert rows[0]["status"] == "queued"
        async with asyncio.timeout(10):
            while True:  # the gateway records the delivery just after the sink answered
                task = await http.get(
                    f"{V1}/gateway/tasks/{rows[0]['gateway_task_id']}", headers=ADMIN
                )
                if task.json()["status"] != "processing":
                    break
                await asyncio.sleep(0.05)
        assert task.json()["status"] == "success"
        hops = [(a["resource_name"], a["status_code"]) for a in task.json()["attempt_log"]]
        assert hops == [  # failed over once: the first URL refuses connections
            (f"watch-alerts-user-{alice.id}-1", None),
            (f"watch-alerts-user-{alice.id}-2", 200),
        ]


async def test_bad_webhook_urls_are_refused(http: httpx.AsyncClient) -> None:
    alice = await new_user(http, "alice@example.com")
    for bad in (["ftp://example.com/x"], ["not a url"], [f"http://h{i}.example" for i in range(6)]):
        response = await http.patch(
            f"{V1}/me", json={"preferences": {"webhook_urls": bad}}, headers=alice.headers
        )
        assert response.status_code == 422, response.text


async def test_removing_the_urls_turns_the_endpoint_off(http: httpx.AsyncClient) -> None:
    alice = await new_user(http, "alice@example.com")
    urls = {"notifications_webhook": True, "webhook_urls": ["https://hooks.example.com/a"]}
    await http.patch(f"{V1}/me", json={"preferences": urls}, headers=alice.headers)
    endpoint_id = (await http.get(f"{V1}/me/webhook", headers=alice.headers)).json()["endpoint_id"]
    endpoint = await http.get(f"{V1}/gateway/endpoints/{endpoint_id}", headers=ADMIN)
    assert endpoint.json()["is_active"] is True
    await http.patch(f"{V1}/me", json={"preferences": {"webhook_urls": []}}, headers=alice.headers)
    off = (await http.get(f"{V1}/me/webhook", headers=alice.headers)).json()
    assert off["enabled"] is False
    assert off["urls"] == []
    endpoint = await http.get(f"{V1}/gateway/endpoints/{endpoint_id}", headers=ADMIN)
    assert endpoint.json()["is_active"] is False
    # Deleting the user removes the endpoint too.
    assert (await http.delete(f"{V1}/users/{alice.id}", headers=ADMIN)).status_code == 204
    gone = await http.get(f"{V1}/gateway/endpoints/{endpoint_id}", headers=ADMIN)
    assert gone.status_code == 404


async def test_a_user_created_with_webhook_urls_has_their_endpoint(
    http: httpx.AsyncClient,
) -> None:
    """Preferences given at creation configure the webhook as a later PATCH /me would."""
    urls = ["https://hooks.example.com/a", "https://hooks.example.com/b"]
    preferences = {"notifications_webhook": True, "webhook_urls": urls}
    alice = await new_user(http, "alice@example.com", preferences=preferences)
    hook = (await http.get(f"{V1}/me/webhook", headers=alice.headers)).json()
    assert hook["enabled"] is True
    assert hook["urls"] == urls
    endpoint = await http.get(f"{V1}/gateway/endpoints/{hook['endpoint_id']}", headers=ADMIN)
    assert endpoint.json()["is_active"] is True
    assert [r["name"] for r in endpoint.json()["resources"]] == [
        f"watch-alerts-user-{alice.id}-1",
        f"watch-alerts-user-{alice.id}-2",
    ]
