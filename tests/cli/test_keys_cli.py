"""`dispatch keys create|list|revoke` against a real database, in a subprocess."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.support import make_settings, run_cli, running_app


def _cli(
    args: list[str], db_settings: dict[str, Any], cwd: Path
) -> subprocess.CompletedProcess[str]:
    env = {"LOG_LEVEL": "WARNING", "DATABASE_URL": db_settings["database_url"]}
    if db_settings.get("database_schema"):
        env["DATABASE_SCHEMA"] = db_settings["database_schema"]
    return run_cli([*args, "--env-file", str(cwd / "absent.env")], cwd, env)


async def test_keys_lifecycle_from_the_command_line(
    db_settings: dict[str, Any], tmp_path: Path
) -> None:
    created = _cli(
        ["keys", "create", "--name", "cron", "--scope", "read", "--scope", "metrics"],
        db_settings,
        tmp_path,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("dsp_")
    assert "scopes=metrics,read" in created.stderr

    listed = _cli(["keys", "list"], db_settings, tmp_path)
    assert listed.returncode == 0
    key_id, prefix, name, scopes, state = listed.stdout.split("\t")[:5]
    assert (prefix, name, scopes, state) == (key[:12], "cron", "metrics,read", "active")
    assert key not in listed.stdout

    async with running_app(make_settings(**db_settings)) as client:
        ok = await client.get("/metrics", headers={"X-Dispatch-Key": key})
        assert ok.status_code == 200
        revoked = _cli(["keys", "revoke", key_id], db_settings, tmp_path)
        assert revoked.returncode == 0
        after: httpx.Response = await client.get("/metrics", headers={"X-Dispatch-Key": key})
        assert after.status_code == 401

    missing = _cli(["keys", "revoke", "4242"], db_settings, tmp_path)
    assert missing.returncode == 1
    assert "4242" in missing.stderr
