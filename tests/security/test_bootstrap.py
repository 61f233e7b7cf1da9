from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from dispatch.demo.serving import free_port
from dispatch.security.bootstrap import ensure_master_key


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_call_writes_a_private_master_key(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("APP_NAME=Mine\nMASTER_KEY=\n")
    env.chmod(0o644)

    key = ensure_master_key(env)

    assert key is not None
    assert key.startswith("dsp_")
    lines = env.read_text().splitlines()
    assert "APP_NAME=Mine" in lines
    assert lines.count(f"MASTER_KEY={key}") == 1
    assert not any(line == "MASTER_KEY=" for line in lines)
    assert _mode(env) == 0o600


def test_existing_master_key_is_kept_and_permissions_tightened(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("MASTER_KEY=already-there\n")
    env.chmod(0o664)
    assert ensure_master_key(env) is None
    assert env.read_text() == "MASTER_KEY=already-there\n"
    assert _mode(env) == 0o600


def _serve(cwd: Path, port: int) -> subprocess.Popen[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": f"sqlite:///{cwd}/dispatch.db",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "dispatch", "serve", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve exited early"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("serve did not become healthy")


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    output, _ = process.communicate(timeout=30)
    return output


def test_serve_bootstraps_once_and_the_key_works(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = _serve(tmp_path, port)
    try:
        _wait_healthy(url, first)
        env = tmp_path / ".env"
        assert _mode(env) == 0o600
        key = env.read_text().split("MASTER_KEY=")[1].strip()
        listed = httpx.get(f"{url}/api/v1/keys", headers={"X-Dispatch-Key": key}, timeout=5)
        assert listed.status_code == 200
        assert httpx.get(f"{url}/api/v1/keys", timeout=5).status_code == 401
    finally:
        output = _stop(first)
    assert output.count(key) == 1, "the new key is printed exactly once"

    second = _serve(tmp_path, port)
    try:
        _wait_healthy(url, second)
    finally:
        output = _stop(second)
    assert key not in output
    assert env.read_text().count("MASTER_KEY=") == 1
