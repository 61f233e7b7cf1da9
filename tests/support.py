"""Helpers the tests share: settings, app clients, a live server, a TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from dispatch.app import create_app
from dispatch.config import Settings, load_settings, normalise_database_url
from dispatch.demo.serving import ThreadedServer, free_port

MASTER_KEY = "dsp_test-master-key-0123456789abcdefghijklmnop"
ADMIN_PASSWORD = "correct horse battery staple"


def test_database_url() -> str | None:
    return os.environ.get("DISPATCH_TEST_DATABASE_URL") or None


def test_redis_url() -> str | None:
    return os.environ.get("DISPATCH_TEST_REDIS_URL") or None


def make_settings(**overrides: Any) -> Settings:
    """Settings for a test: no .env, and nothing taken from the machine's environment."""
    values: dict[str, Any] = {
        "environment": "test",
        "master_key": MASTER_KEY,
        "api_keys": "",
        "redis_url": None,
        "gateway_admin_password": ADMIN_PASSWORD,
        "telemetry_endpoint": None,
        "request_rate_per_minute": 10_000,
        "login_rate_per_minute": 10_000,
        "watch_rate_per_minute": 10_000,
        "stream_rate_per_minute": 10_000,
        "search_rate_per_minute": 10_000,
        "log_level": "WARNING",
        # Tests that exercise the embedded worker turn it on; the rest keep the database quiet.
        "worker_enabled": False,
    }
    values.update(overrides)
    return load_settings(None, **values)


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings, app: FastAPI | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, reached in-process through an ASGI transport."""
    app = app or create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def admin_headers(key: str = MASTER_KEY) -> dict[str, str]:
    return {"X-Dispatch-Key": key}


def start_worker(db_settings: dict[str, Any], tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    """`dispatch worker` in its own process on the test's database, with short leases."""
    variables = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": db_settings["database_url"],
        "LOG_LEVEL": "WARNING",
        "JOB_LEASE_SECONDS": "1",
        "QUEUE_UPKEEP_INTERVAL_SECONDS": "0.2",
        "WORKER_POLL_INTERVAL_SECONDS": "0.05",
        **env,
    }
    if db_settings.get("database_schema"):
        variables["DATABASE_SCHEMA"] = db_settings["database_schema"]
    return subprocess.Popen(
        [sys.executable, "-m", "dispatch", "worker", "--env-file", str(tmp_path / "none")],
        cwd=tmp_path,
        env=variables,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class LiveServer(ThreadedServer):
    """The real Dispatch app, lifespan and all."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(create_app(settings))
        self.database_kind = settings.database_kind


class TcpProxy:
    """A loopback TCP relay that can be cut and restored, to take a dependency 'down'."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)


class HttpSink(ThreadedServer):
    """A real HTTP server on loopback that records JSON bodies; can fail the first N calls."""

    def __init__(self, fail_first: int = 0) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        self.received: list[Any] = []
        self.calls = 0
        self.fail_first = fail_first

        async def collect(request: Request) -> JSONResponse:
            self.calls += 1
            if self.calls <= self.fail_first:
                return JSONResponse({"error": "try later"}, status_code=503)
            self.received.append(await request.json())
            return JSONResponse({"ok": True})

        super().__init__(Starlette(routes=[Route("/collect", collect, methods=["POST"])]))
        self.url = f"{self.url}/collect"


async def run_sql(url: str, statement: str) -> None:
    """One statement on the PostgreSQL server behind ``url`` (schemas for isolation)."""
    engine = create_async_engine(normalise_database_url(url))
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


def run_cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m dispatch ARGS`` with only PATH and ``env`` in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "dispatch", *args],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
