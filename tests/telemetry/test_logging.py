from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from dispatch.telemetry.logging import configure_logging, resolve_format
from tests.support import admin_headers, make_settings, running_app


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


def test_format_follows_environment() -> None:
    assert resolve_format("auto", "production") == "json"
    assert resolve_format("auto", "development") == "console"
    assert resolve_format("json", "development") == "json"


async def test_json_logs_carry_the_request_id(
    db_settings: dict[str, Any], capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("INFO", "json")
    async with running_app(make_settings(**db_settings, log_level="INFO")) as client:
        response = await client.get("/api/v1/system", headers=admin_headers())
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    requests = [r for r in records if r.get("event") == "http.request"]
    assert requests, records
    last = requests[-1]
    assert last["request_id"] == response.headers["X-Request-ID"]
    assert last["route"] == "/api/v1/system"
    assert last["status"] == 200
    assert last["level"] == "info"
    assert admin_headers()["X-Dispatch-Key"] not in json.dumps(records)
