"""``POST /api/{path}``: auth, checks, the 202 after commit, idempotency and hold."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.conftest import ADMIN, V1, Gateway
from tests.gateway.sink import Sink

PAYLOAD = {"ref": "r-1", "scope": "prod", "event": "signup"}


def _envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["status"] == status
    assert error["request_id"]
    return error


async def test_unknown_or_inactive_endpoint_is_404(gateway: Gateway, sink: Sink) -> None:
    endpoint, _, token = await gateway.setup(sink, ["a"])
    _envelope(await gateway.send("nope", token, PAYLOAD), 404, "not_found")
    await gateway.http.patch(
        f"{V1}/endpoints/{endpoint['id']}", json={"is_active": False}, headers=ADMIN
    )
    _envelope(await gateway.send("notify", token, PAYLOAD), 404, "not_found")


async def test_missing_token_401_wrong_token_403(gateway: Gateway, sink: Sink) -> None:
    await gateway.setup(sink, ["a"])
    no_token = await gateway.http.post("/api/notify", json=PAYLOAD)
    assert _envelope(no_token, 401, "unauthorized")["message"] == "API token is missing"
    _envelope(await gateway.send("notify", "dpy_not-a-real-token", PAYLOAD), 403, "forbidden")
    other = await gateway.endpoint("other", [])
    outsider = await gateway.client("outsider", [other["id"]])
    _envelope(await gateway.send("notify", outsider["token"], PAYLOAD), 403, "forbidden")


@pytest.mark.parametrize(
    "header",
    ["X-API-Token", "token", "access_token", "access-token", "x_api_token", "Authorization"],
)
async def test_every_seed_token_header_is_accepted(
    gateway: Gateway, sink: Sink, header: str
) -> None:
    _, _, token = await gateway.setup(sink, ["a"])
    value = f"Bearer {token}" if header == "Authorization" else token
    response = await gateway.http.post("/api/notify", json=PAYLOAD, headers={header: value})
    assert response.status_code == 202, response.text


async def test_an_admin_key_may_call_an_endpoint(gateway: Gateway, sink: Sink) -> None:
    await gateway.setup(sink, ["a"])
    response = await gateway.http.post("/api/notify", json=PAYLOAD, headers=ADMIN)
    assert response.status_code == 202, response.text
    task = await gateway.settled(response.json()["task_id"])
    assert task["client_name"] == "admin"


async def test_missing_params_are_422_and_bad_bodies_400_or_413(
    gateway: Gateway, sink: Sink
) -> None:
    _, _, token = await gateway.setup(sink, ["a"], required_params=["ref", "scope", "user_id"])
    error = _envelope(await gateway.send("notify", token, {"ref": "x"}), 422, "validation_error")
    assert error["details"]["missing"] == ["scope", "user_id"]
    empty_ref = await gateway.send("notify", token, {"ref": "", "scope": "s", "user_id": 1})
    assert _envelope(empty_ref, 422, "validation_error")["details"]["missing"] == ["ref"]
    headers = {"X-API-Token": token, "Content-Type": "application/json"}
    not_json = await gateway.http.post("/api/notify", content=b"{nope", headers=headers)
    _envelope(not_json, 400, "bad_request")
    a_list = await gateway.http.post("/api/notify", content=b"[1, 2]", headers=headers)
    _envelope(a_list, 400, "bad_request")
    huge = {**PAYLOAD, "user_id": 1, "blob": "x" * 300_000}
    _envelope(await gateway.send("notify", token, huge), 413, "payload_too_large")
    tasks = (await gateway.http.get(f"{V1}/tasks", headers=ADMIN)).json()["items"]
    assert tasks == []  # nothing was stored for a refused request


async def test_idempotency_key_returns_the_same_task(gateway: Gateway, sink: Sink) -> None:
    endpoint, _, token = await gateway.setup(sink, ["a"])
    first = await gateway.send("notify", token, PAYLOAD, **{"Idempotency-Key": "order-1"})
    again = await gateway.send("notify", token, PAYLOAD, **{"Idempotency-Key": "order-1"})
    assert first.status_code == again.status_code == 202
    assert again.json()["task_id"] == first.json()["task_id"]
    assert again.json()["replayed"] is True
    await gateway.settled(first.json()["task_id"])
    assert len(sink.at("a")) == 1
    # The same key from another client is another request.
    other = await gateway.client("other", [endpoint["id"]])
    theirs = await gateway.send("notify", other["token"], PAYLOAD, **{"Idempotency-Key": "order-1"})
    assert theirs.json()["task_id"] != first.json()["task_id"]


async def test_held_tasks_wait_for_release(gateway: Gateway, sink: Sink) -> None:
    _, _, token = await gateway.setup(sink, ["a"], is_development_mode=True, dev_hold_tasks=True)
    response = await gateway.send("notify", token, PAYLOAD)
    assert response.json()["status"] == "held"
    task_id = response.json()["task_id"]
    assert (await gateway.task(task_id))["status"] == "held"
    assert sink.received == []
    released = await gateway.http.post(f"{V1}/tasks/{task_id}/release", headers=ADMIN)
    assert released.status_code == 200, released.text
    task = await gateway.settled(task_id)
    assert task["status"] == "success"
    assert len(sink.at("a")) == 1


async def test_a_client_that_holds_holds_everywhere(gateway: Gateway, sink: Sink) -> None:
    endpoint, _, _ = await gateway.setup(sink, ["a"])
    tester = await gateway.client("tester", [endpoint["id"]], dev_hold_tasks=True)
    assert (await gateway.send("notify", tester["token"], PAYLOAD)).json()["status"] == "held"


async def test_dev_rules_endpoint_rules_win(gateway: Gateway, sink: Sink) -> None:
    endpoint, _, _ = await gateway.setup(
        sink, ["a"], is_development_mode=True, dev_rules_enabled=True
    )
    tester = await gateway.client(
        "tester",
        [endpoint["id"]],
        dev_rules_enabled=True,
        dev_rules=[
            {"target_param": "phone", "override_value": "0000"},
            {
                "target_param": "note",
                "override_value": "from client",
                "condition_param": "event",
                "condition_value": "sign",
                "match": "contains",
            },
        ],
    )
    rules = {
        "dev_rules": [
            {
                "target_param": "phone",
                "override_value": "1111",
                "condition_param": "event",
                "condition_value": "^sign(up|in)$",
                "match": "regex",
            }
        ]
    }
    put = await gateway.http.put(
        f"{V1}/endpoints/{endpoint['id']}/rules", json=rules, headers=ADMIN
    )
    assert put.status_code == 200, put.text
    task_id = (await gateway.send("notify", tester["token"], PAYLOAD)).json()["task_id"]
    await gateway.settled(task_id)
    delivered = sink.at("a")[0].json()
    assert delivered["phone"] == "1111"  # the endpoint's rule wins over the client's
    assert delivered["note"] == "from client"
    assert delivered["event"] == "signup"


async def test_mapping_test_shows_the_target(gateway: Gateway, sink: Sink) -> None:
    endpoint, (resource,), _ = await gateway.setup(sink, ["a"])
    body = {
        "payload": {"ref": "1", "scope": "s", "user": {"name": "Ada"}},
        "rules": {
            "mapping": [
                {
                    "resource_id": resource["id"],
                    "target_key": "name",
                    "source_type": "from_source",
                    "source_value": "user.name",
                },
                {
                    "resource_id": resource["id"],
                    "target_key": "mail",
                    "source_type": "from_source",
                    "source_value": "user.mail",
                },
            ]
        },
    }
    response = await gateway.http.post(
        f"{V1}/endpoints/{endpoint['id']}/mapping-test", json=body, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["target"] == {"name": "Ada"}
    assert result["missing"] == ["user.mail"]


async def test_a_bad_regex_rule_is_refused(gateway: Gateway, sink: Sink) -> None:
    endpoint, _, _ = await gateway.setup(sink, ["a"])
    too_long = {
        "target_param": "x",
        "condition_param": "y",
        "match": "regex",
        "condition_value": "a" * 500,
    }
    response = await gateway.http.put(
        f"{V1}/endpoints/{endpoint['id']}/rules", json={"dev_rules": [too_long]}, headers=ADMIN
    )
    _envelope(response, 422, "validation_error")


async def test_endpoint_paths_cannot_shadow_the_service(gateway: Gateway) -> None:
    for path in ("v1/jobs", "../etc", "a b"):
        response = await gateway.http.post(
            f"{V1}/endpoints", json={"path": path, "resource_ids": []}, headers=ADMIN
        )
        _envelope(response, 422, "validation_error")
    await gateway.endpoint("alerts/send", [])
    dup = await gateway.http.post(f"{V1}/endpoints", json={"path": "alerts/send"}, headers=ADMIN)
    _envelope(dup, 409, "conflict")


async def test_other_methods_are_405_on_endpoints_404_elsewhere(
    gateway: Gateway, sink: Sink
) -> None:
    await gateway.setup(sink, ["a"])
    wrong = await gateway.http.get("/api/notify")
    _envelope(wrong, 405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"
    _envelope(await gateway.http.get("/api/unknown"), 404, "not_found")
    _envelope(await gateway.http.get("/api/v1/nothing"), 404, "not_found")


async def test_concurrent_requests_share_commits_without_mixing_up(
    gateway: Gateway, sink: Sink
) -> None:
    import asyncio

    _, _, token = await gateway.setup(sink, ["a"], is_development_mode=True, dev_hold_tasks=True)
    bodies = [{**PAYLOAD, "n": n} for n in range(40)]
    keyed = [
        gateway.send("notify", token, PAYLOAD, **{"Idempotency-Key": "same"}) for _ in range(5)
    ]
    responses = await asyncio.gather(*(gateway.send("notify", token, b) for b in bodies), *keyed)
    assert {r.status_code for r in responses} == {202}
    plain, repeats = responses[:40], responses[40:]
    ids = [r.json()["task_id"] for r in plain]
    assert len(set(ids)) == 40
    for body, task_id in zip(bodies, ids, strict=True):  # each caller got its own task back
        assert (await gateway.task(task_id))["source_payload"] == body
    assert len({r.json()["task_id"] for r in repeats}) == 1
    assert sorted(r.json()["replayed"] for r in repeats) == [False, True, True, True, True]
    stored = await gateway.http.get(f"{V1}/tasks?limit=100", headers=ADMIN)
    assert len(stored.json()["items"]) == 41
