"""The admin API: task lifecycle guards, search, secrets shown masked, rotation."""

from __future__ import annotations

from standardwebhooks.webhooks import Webhook

from tests.gateway.conftest import ADMIN, V1, Gateway
from tests.gateway.sink import Sink

PAYLOAD = {"ref": "r-1", "scope": "prod"}


async def test_stop_retry_and_delete_follow_the_status_rules(gateway: Gateway, sink: Sink) -> None:
    _, _, token = await gateway.setup(sink, ["a"], is_development_mode=True, dev_hold_tasks=True)
    task_id = (await gateway.send("notify", token, PAYLOAD)).json()["task_id"]

    stopped = await gateway.http.post(f"{V1}/tasks/{task_id}/stop", headers=ADMIN)
    assert stopped.json()["status"] == "stopped"
    again = await gateway.http.post(f"{V1}/tasks/{task_id}/stop", headers=ADMIN)
    assert again.status_code == 409
    assert again.json()["error"]["details"] == {"status": "stopped"}

    retried = await gateway.http.post(f"{V1}/tasks/{task_id}/retry", headers=ADMIN)
    assert retried.status_code == 200
    assert retried.json()["series"] == 2
    task = await gateway.settled(task_id)
    assert task["status"] == "success"
    assert {a["series"] for a in task["attempt_log"]} == {2}
    assert (
        await gateway.http.post(f"{V1}/tasks/{task_id}/retry", headers=ADMIN)
    ).status_code == 409

    deleted = await gateway.http.delete(f"{V1}/tasks/{task_id}", headers=ADMIN)
    assert deleted.status_code == 204
    assert (await gateway.http.get(f"{V1}/tasks/{task_id}", headers=ADMIN)).status_code == 404


async def test_a_processing_task_is_never_deleted(gateway: Gateway, sink: Sink) -> None:
    sink.set("slow", delay=1.5)
    _, _, token = await gateway.setup(sink, ["slow"])
    busy = (await gateway.send("notify", token, PAYLOAD)).json()["task_id"]
    await sink.wait_for(1, "slow")
    assert (await gateway.task(busy))["status"] == "processing"

    refused = await gateway.http.delete(f"{V1}/tasks/{busy}", headers=ADMIN)
    assert refused.status_code == 409
    batch = await gateway.http.post(
        f"{V1}/tasks/batch", json={"action": "delete", "task_ids": [busy, 999_999]}, headers=ADMIN
    )
    assert batch.status_code == 200
    assert batch.json()["done"] == []
    assert set(batch.json()["refused"]) == {str(busy), "999999"}
    assert (await gateway.settled(busy))["status"] == "success"


async def test_search_filters_and_pages(gateway: Gateway, sink: Sink) -> None:
    _, _, token = await gateway.setup(sink, ["a"], is_development_mode=True, dev_hold_tasks=True)
    ids = []
    for n in range(5):
        body = {"ref": f"order-{n}", "scope": "eu" if n % 2 else "us", "note": f"needle{n}"}
        ids.append((await gateway.send("notify", token, body)).json()["task_id"])

    page = (await gateway.http.get(f"{V1}/tasks?limit=2", headers=ADMIN)).json()
    assert [t["id"] for t in page["items"]] == ids[::-1][:2]
    rest = await gateway.http.get(
        f"{V1}/tasks?limit=10&cursor={page['next_cursor']}", headers=ADMIN
    )
    assert [t["id"] for t in rest.json()["items"]] == ids[::-1][2:]
    assert rest.json()["next_cursor"] is None

    by_scope = (await gateway.http.get(f"{V1}/tasks?scope=eu", headers=ADMIN)).json()["items"]
    assert sorted(t["id"] for t in by_scope) == [ids[1], ids[3]]
    by_text = (await gateway.http.get(f"{V1}/tasks?search=NEEDLE3", headers=ADMIN)).json()
    assert [t["id"] for t in by_text["items"]] == [ids[3]]
    by_status = (await gateway.http.get(f"{V1}/tasks?status=held", headers=ADMIN)).json()
    assert len(by_status["items"]) == 5
    bad = await gateway.http.get(f"{V1}/tasks?cursor=!!!", headers=ADMIN)
    assert bad.status_code == 400
    wrong = await gateway.http.get(f"{V1}/tasks?status=weird", headers=ADMIN)
    assert wrong.status_code == 422


async def test_secret_headers_are_masked_and_kept(gateway: Gateway, sink: Sink) -> None:
    secret_value = "Bearer sk_live_0123456789abcdef"
    resource = await gateway.resource(
        "api", sink.url("a"), headers={"Authorization": secret_value, "X-Team": "blue"}
    )
    assert resource["headers"]["X-Team"] == "blue"
    assert secret_value not in str(resource)
    assert resource["signing_secret"].endswith("••••")
    assert resource["signing_secret_full"].startswith("whsec_")
    # Sending the masked value back keeps the real one.
    patched = await gateway.http.patch(
        f"{V1}/resources/{resource['id']}", json={"headers": resource["headers"]}, headers=ADMIN
    )
    assert patched.status_code == 200
    endpoint = await gateway.endpoint("notify", [resource["id"]])
    token = (await gateway.client("acme", [endpoint["id"]]))["token"]
    task = await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    assert sink.at("a")[0].headers["Authorization"] == secret_value
    logged = task["attempt_log"][0]["request_headers"]
    assert secret_value not in str(logged)
    assert logged["X-Team"] == "blue"


async def test_rotated_secrets_both_sign_during_the_grace(gateway: Gateway, sink: Sink) -> None:
    resource = await gateway.resource("api", sink.url("a"))
    old = resource["signing_secret_full"]
    rotated = await gateway.http.post(
        f"{V1}/resources/{resource['id']}/rotate-secret", headers=ADMIN
    )
    new = rotated.json()["signing_secret"]
    assert new != old
    assert rotated.json()["previous_secret_expires_at"]
    endpoint = await gateway.endpoint("notify", [resource["id"]])
    token = (await gateway.client("acme", [endpoint["id"]]))["token"]
    await gateway.settled((await gateway.send("notify", token, PAYLOAD)).json()["task_id"])
    request = sink.at("a")[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(request.body, request.headers) == PAYLOAD


async def test_a_rotated_client_token_replaces_the_old(gateway: Gateway, sink: Sink) -> None:
    _, _, token = await gateway.setup(sink, ["a"])
    client_id = (await gateway.http.get(f"{V1}/clients", headers=ADMIN)).json()[0]["id"]
    rotated = await gateway.http.post(f"{V1}/clients/{client_id}/rotate-token", headers=ADMIN)
    new = rotated.json()["token"]
    assert new.startswith("dpy_")
    assert new != token
    assert (await gateway.send("notify", token, PAYLOAD)).status_code == 403
    assert (await gateway.send("notify", new, PAYLOAD)).status_code == 202
    listed = (await gateway.http.get(f"{V1}/clients", headers=ADMIN)).json()[0]
    assert "token" not in listed
    assert listed["token_prefix"] == new[:12]


async def test_reads_need_a_key_and_writes_the_write_scope(gateway: Gateway) -> None:
    assert (await gateway.http.get(f"{V1}/resources")).status_code == 401
    made = await gateway.http.post(
        "/api/v1/keys", json={"name": "reader", "scopes": ["read"]}, headers=ADMIN
    )
    reader = {"X-Dispatch-Key": made.json()["key"]}
    assert (await gateway.http.get(f"{V1}/resources", headers=reader)).status_code == 200
    denied = await gateway.http.post(
        f"{V1}/resources", json={"name": "x", "url": "http://127.0.0.1/"}, headers=reader
    )
    assert denied.status_code == 403


async def test_duplicates_are_inactive_copies(gateway: Gateway, sink: Sink) -> None:
    endpoint, (resource,), _ = await gateway.setup(sink, ["a"])
    copy = await gateway.http.post(f"{V1}/resources/{resource['id']}/duplicate", headers=ADMIN)
    assert copy.status_code == 201
    assert copy.json()["name"] == "r-a copy"
    assert copy.json()["is_active"] is False
    dup = await gateway.http.post(f"{V1}/endpoints/{endpoint['id']}/duplicate", headers=ADMIN)
    assert dup.json()["path"] == "notify-copy"
    assert [r["id"] for r in dup.json()["resources"]] == [resource["id"]]


async def test_patch_null_clears_optional_settings(gateway: Gateway, sink: Sink) -> None:
    resource = await gateway.resource("api", sink.url("a"), rate_limit_per_second=5)
    url = f"{V1}/resources/{resource['id']}"
    cleared = await gateway.http.patch(
        url, json={"rate_limit_per_second": None, "timeout_seconds": None}, headers=ADMIN
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["rate_limit_per_second"] is None
    assert cleared.json()["timeout_seconds"] == 2  # not nullable: null leaves it as it was


async def test_dropping_a_resource_drops_its_mapping_rules(gateway: Gateway, sink: Sink) -> None:
    endpoint, (first, second), _ = await gateway.setup(sink, ["a", "b"])
    rule = {"target_key": "x", "source_type": "constant", "source_value": "1"}
    rules = {
        "mapping": [{**rule, "resource_id": first["id"]}, {**rule, "resource_id": second["id"]}]
    }
    url = f"{V1}/endpoints/{endpoint['id']}"
    assert (await gateway.http.put(f"{url}/rules", json=rules, headers=ADMIN)).status_code == 200
    await gateway.http.patch(url, json={"resource_ids": [second["id"]]}, headers=ADMIN)
    kept = (await gateway.http.get(f"{url}/rules", headers=ADMIN)).json()["mapping"]
    assert [r["resource_id"] for r in kept] == [second["id"]]


async def test_bad_settings_input_is_a_4xx_never_a_500(gateway: Gateway) -> None:
    kept = await gateway.http.put(f"{V1}/settings", json={"smtp_port": None}, headers=ADMIN)
    assert kept.status_code == 200
    assert kept.json()["smtp_port"] == 587
    await gateway.http.put(f"{V1}/settings", json={"smtp_server": "bad..host"}, headers=ADMIN)
    test = await gateway.http.post(f"{V1}/settings/test-smtp", headers=ADMIN)
    assert test.status_code == 200
    assert test.json()["success"] is False


async def test_an_endpoint_description_can_be_cleared(gateway: Gateway) -> None:
    made = await gateway.endpoint("notify", [], description="old")
    url = f"{V1}/endpoints/{made['id']}"
    cleared = await gateway.http.patch(url, json={"description": None}, headers=ADMIN)
    assert cleared.json()["description"] is None
