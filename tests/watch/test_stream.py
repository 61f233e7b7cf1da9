"""The live stream over real HTTP: in one process, across processes (PostgreSQL NOTIFY, Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatch.config import Settings
from dispatch.db.engine import Database
from tests.support import LiveServer, admin_headers, make_settings, start_worker
from tests.watch.conftest import OFFLINE_PROVIDERS, V1, WatchUser, new_user
from tests.watch.test_evaluate import product, write
from tests.web.test_watch_ui import token_of, user_login

ADMIN = admin_headers()


class Stream:
    """One SSE connection read in the background: its messages and its comment lines."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self.base_url, self.headers = base_url, headers
        self.messages: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.comments: list[str] = []
        self.connected = asyncio.Event()
        self.status: int | None = None
        self.task: asyncio.Task[None] | None = None
        self.path = f"{V1}/stream/events"

    async def __aenter__(self) -> Stream:
        self.task = asyncio.create_task(self._read())
        async with asyncio.timeout(15):
            await self.connected.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _read(self) -> None:
        async with (
            httpx.AsyncClient(base_url=self.base_url, timeout=30) as client,
            client.stream("GET", self.path, headers=self.headers) as response,
        ):
            self.status = response.status_code
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    self.comments.append(line)
                    self.connected.set()
                elif line.startswith("id: "):
                    self.ids.append(line[4:])
                elif line.startswith("data: "):
                    self.messages.append(json.loads(line[6:]))

    async def wait_for(self, count: int, seconds: float = 20) -> list[dict[str, Any]]:
        async with asyncio.timeout(seconds):
            while len(self.messages) < count:  # noqa: ASYNC110 - filled by the reading task
                await asyncio.sleep(0.02)
        return self.messages


async def setup_rule(base_url: str, email: str) -> WatchUser:
    async with httpx.AsyncClient(base_url=base_url) as http:
        user = await new_user(http, email)
        body = {"name": "dunks", "query": {"sources": ["goat"], "keywords": ["dunk"]}}
        response = await http.post(f"{V1}/watch-rules", json=body, headers=user.headers)
        assert response.status_code == 201, response.text
        return user


@pytest.fixture
def worker_settings(db_settings: dict[str, Any]) -> Settings:
    return make_settings(
        **db_settings,
        **OFFLINE_PROVIDERS,
        worker_enabled=True,
        worker_poll_interval_seconds=0.1,
        sync_schedule="",
    )


async def test_a_match_reaches_the_stream_of_its_user_only(worker_settings: Settings) -> None:
    with LiveServer(worker_settings) as server:
        alice = await setup_rule(server.url, "alice@example.com")
        bob = await setup_rule(server.url, "bob@example.com")
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.delete(f"{V1}/watch-rules/1", headers=alice.headers)  # Alice's rule off
            await http.post(f"{V1}/watch-rules/1/disable", headers=alice.headers)
        database = Database(worker_settings)
        try:
            async with (
                Stream(server.url, alice.headers) as hers,
                Stream(server.url, bob.headers) as his,
                Stream(server.url, ADMIN) as everyone,
            ):
                await write(database, product("a", "Nike Dunk Low"))
                (message,) = await his.wait_for(1)
                await everyone.wait_for(1)
                await asyncio.sleep(0.5)
                assert hers.messages == []
        finally:
            await database.dispose()
    assert message["event_type"] == "NEW_MATCH"
    assert message["user_id"] == bob.id
    assert set(message) >= {"notification_id", "event_id", "event_type", "created_at"}
    assert his.ids == [str(message["notification_id"])]
    assert everyone.messages == [message]


async def test_a_reconnecting_client_gets_what_it_missed(worker_settings: Settings) -> None:
    with LiveServer(worker_settings) as server:
        alice = await setup_rule(server.url, "alice@example.com")
        database = Database(worker_settings)
        try:
            async with Stream(server.url, alice.headers) as first:
                await write(database, product("a", "Nike Dunk Low"))
                (seen,) = await first.wait_for(1)
            await write(database, product("b", "Dunk High"), product("c", "SB Dunk"))
            feed_path = f"{V1}/notifications?channel=realtime"
            async with httpx.AsyncClient(base_url=server.url) as http:
                async with asyncio.timeout(20):
                    while True:
                        feed = (await http.get(feed_path, headers=alice.headers)).json()
                        if len(feed) >= 3:
                            break
                        await asyncio.sleep(0.05)
            resumed = {**alice.headers, "Last-Event-ID": str(seen["notification_id"])}
            async with Stream(server.url, resumed) as second:
                missed = await second.wait_for(2)
        finally:
            await database.dispose()
    later = sorted(n["id"] for n in feed if n["id"] > seen["notification_id"])
    assert len(later) == 2
    assert [m["notification_id"] for m in missed] == later


async def test_keepalive_pings_and_auth(db_settings: dict[str, Any]) -> None:
    settings = make_settings(**db_settings, watch_stream_keepalive_seconds=0.2)
    with LiveServer(settings) as server:
        alice = await setup_rule(server.url, "alice@example.com")
        async with Stream(server.url, alice.headers) as quiet:
            await asyncio.sleep(0.7)
        async with httpx.AsyncClient(base_url=server.url) as http:
            refused = await http.get(f"{V1}/stream/events")
    assert quiet.comments.count(": ping") >= 2
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"


@pytest.fixture
def worker_process(
    db_settings: dict[str, Any], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Any]:
    processes: list[subprocess.Popen[str]] = []

    offline = {name.upper(): str(value) for name, value in OFFLINE_PROVIDERS.items()}

    def start(**env: str) -> subprocess.Popen[str]:
        process = start_worker(db_settings, tmp_path, **offline, **env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    "relay",
    [
        pytest.param("postgres", marks=pytest.mark.postgres, id="postgresql-notify"),
        pytest.param("redis", marks=pytest.mark.redis, id="redis"),
    ],
)
async def test_across_processes(
    relay: str, db_settings: dict[str, Any], worker_process: Any, request: pytest.FixtureRequest
) -> None:
    """A worker process writes the event; the API process relays it to the stream, through
    PostgreSQL's NOTIFY or through Redis."""
    env: dict[str, str] = {}
    if relay == "postgres":
        request.getfixturevalue("postgres_url")
        settings = make_settings(**db_settings)  # this process serves the API only
    else:
        redis_url = request.getfixturevalue("redis_url")
        settings = make_settings(**db_settings, redis_url=redis_url)
        env = {"REDIS_URL": redis_url}
    with LiveServer(settings) as server:
        alice = await setup_rule(server.url, "alice@example.com")
        worker_process(**env)
        database = Database(settings)
        try:
            async with Stream(server.url, alice.headers) as stream:
                await write(database, product("a", "Nike Dunk Low"))
                (message,) = await stream.wait_for(1)
        finally:
            await database.dispose()
    assert message["event_type"] == "NEW_MATCH"
    assert message["user_id"] == alice.id


async def _ends(task: asyncio.Task[None] | None, seconds: float = 5) -> None:
    """The server closes the stream: the reading task finishes by itself."""
    assert task is not None
    async with asyncio.timeout(seconds):
        await asyncio.shield(task)


async def test_a_revoked_key_or_a_ui_logout_ends_the_stream(db_settings: dict[str, Any]) -> None:
    settings = make_settings(**db_settings, watch_stream_keepalive_seconds=0.2)
    with LiveServer(settings) as server:
        alice = await setup_rule(server.url, "alice@example.com")
        async with httpx.AsyncClient(base_url=server.url) as http:
            keys = (await http.get(f"{V1}/me/keys", headers=alice.headers)).json()
            async with Stream(server.url, alice.headers) as api:
                revoked = await http.delete(f"{V1}/me/keys/{keys[0]['id']}", headers=alice.headers)
                assert revoked.status_code == 200, revoked.text
                await _ends(api.task)

            # The UI's stream (cookies of a user session) ends with the session.
            assert (await user_login(http, alice.email)).status_code == 303
            ui = Stream(
                server.url, {"Cookie": "; ".join(f"{k}={v}" for k, v in http.cookies.items())}
            )
            ui.path = "/ui/watch/stream"
            async with ui:
                await asyncio.sleep(0.5)
                assert ui.comments.count(": ping") >= 1
                await http.post("/ui/logout", data={"csrf_token": await token_of(http)})
                await _ends(ui.task)
