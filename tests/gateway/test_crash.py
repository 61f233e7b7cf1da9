"""kill -9 a worker process in the middle of a delivery: the task is delivered after the lease
expires, by another worker, with the same ``webhook-id``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.gateway.conftest import ADMIN, GATEWAY_TEST_SETTINGS, V1, Gateway
from tests.gateway.sink import Sink
from tests.support import make_settings, running_app, start_worker

PAYLOAD = {"ref": "r-1", "scope": "prod", "amount": 12}


async def test_kill_9_mid_delivery_redelivers_with_the_same_webhook_id(
    db_settings: dict[str, Any], sink: Sink, tmp_path: Path
) -> None:
    # The API runs in this process without a worker; deliveries happen in worker processes.
    api_settings = {**GATEWAY_TEST_SETTINGS, "worker_enabled": False}
    worker_env = {"GATEWAY_ALLOWED_NETWORKS": "127.0.0.0/8", "GATEWAY_RETRY_BASE_SECONDS": "0.2"}
    sink.set("hook", delay=60)  # the first delivery hangs until its worker dies
    async with running_app(make_settings(**db_settings, **api_settings)) as http:
        gateway = Gateway(http)
        _, (resource,), token = await gateway.setup(sink, ["hook"])
        patched = await http.patch(
            f"{V1}/resources/{resource['id']}", json={"timeout_seconds": 90}, headers=ADMIN
        )
        assert patched.status_code == 200
        task_id = (await gateway.send("notify", token, PAYLOAD)).json()["task_id"]

        doomed = start_worker(db_settings, tmp_path, **worker_env)
        try:
            await sink.wait_for(1, "hook", seconds=30)
            assert (await gateway.task(task_id))["status"] == "processing"
            doomed.kill()  # SIGKILL mid-request: no shutdown code runs
            doomed.wait(timeout=10)
        finally:
            if doomed.poll() is None:
                doomed.kill()

        sink.set("hook", status=200)
        rescuer = start_worker(db_settings, tmp_path, **worker_env)
        try:
            task = await gateway.settled(task_id, seconds=60)
        finally:
            rescuer.terminate()
            rescuer.communicate(timeout=30)

    assert task["status"] == "success"
    first, second = sink.at("hook")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == task["message_id"]
    assert first.json() == second.json() == PAYLOAD
    # The killed attempt never wrote its hop; the second attempt did.
    assert [(a["attempt"], a["outcome"]) for a in task["attempt_log"]] == [(2, "success")]
