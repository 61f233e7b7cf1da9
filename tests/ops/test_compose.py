"""docker-compose.yml against the code and docs/operations.md (no Docker engine here to run it).

Each service's command must be a real command of this build with real options, every variable it
sets a real setting, and the topology the one operations.md describes: migrations once, API
processes without the embedded worker, workers with Redis, enough PostgreSQL connections.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from dispatch.cli.main import app
from dispatch.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DISPATCH_SERVICES = ("migrate", "api", "worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in service["environment"].items()}


def test_every_command_and_option_exists(compose: dict[str, Any]) -> None:
    cli = get_command(app)
    for name in DISPATCH_SERVICES:
        program, command, *options = compose["services"][name]["command"]
        assert program == "dispatch"
        sub = cli.commands[command]  # type: ignore[attr-defined]
        known = {opt for param in sub.params for opt in param.opts}
        flags = [option for option in options if option.startswith("--")]
        assert set(flags) <= known, (name, flags, known)


def test_every_variable_is_a_setting_and_production_starts(compose: dict[str, Any]) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    environments = [_environment(compose["services"][name]) for name in DISPATCH_SERVICES]
    assert all(env == environments[0] for env in environments)  # one configuration for all
    env = environments[0]
    assert set(env) <= fields, set(env) - fields
    assert env["ENVIRONMENT"] == "production"
    assert env["WORKER_ENABLED"] == "false"  # the worker service runs the queue
    # The ${VAR:?message} secrets, filled in as the docs' example does: production accepts them.
    required = {name for name, value in env.items() if value.startswith("${")}
    assert required == {"SECRET_KEY", "GATEWAY_ADMIN_PASSWORD", "ALLOWED_ORIGINS", "MASTER_KEY"}
    filled = {
        **{k.lower(): v for k, v in env.items() if k not in required},
        "secret_key": "s" * 48,
        "gateway_admin_password": "a long admin password",
        "allowed_origins": "https://dispatch.example.com",
        "master_key": "dsp_" + "m" * 43,
    }
    settings = load_settings(None, **filled)
    assert settings.database_kind == "postgresql"
    assert settings.redis_url == "redis://redis:6379/0"


def test_the_topology_is_the_documented_one(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    # The image's health check asks for HTTP, which only the api serves.
    assert "healthcheck" not in services["api"]
    assert services["worker"]["healthcheck"] == {"disable": True}
    assert services["migrate"]["healthcheck"] == {"disable": True}
    assert "ports" not in services["postgres"]
    assert "ports" not in services["redis"]
    # The worker's stop grace outlasts WORKER_SHUTDOWN_GRACE_SECONDS.
    grace = int(services["worker"]["stop_grace_period"].removesuffix("s"))
    assert grace > Settings.model_fields["worker_shutdown_grace_seconds"].default


def test_postgres_has_room_for_every_pool(compose: dict[str, Any]) -> None:
    command = compose["services"]["postgres"]["command"]
    limit = int(next(arg.split("=")[1] for arg in command if arg.startswith("max_connections=")))
    per_process = (
        Settings.model_fields["db_pool_size"].default
        + Settings.model_fields["db_max_overflow"].default
    )
    api_command = compose["services"]["api"]["command"]
    web_processes = int(api_command[api_command.index("--workers") + 1])
    headroom = per_process  # pg_dump, psql and the like
    workers = (limit - headroom - per_process * (web_processes + 1)) // per_process  # + migrate
    assert workers >= 1
    # operations.md states the limit and how far --scale worker goes with it.
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "`max_connections=200`" in operations
    assert re.search(rf"With more than {workers} workers, raise `max_connections`", operations)
