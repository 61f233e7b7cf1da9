"""The reference rescue node (``dispatch node run``) as a real process, against the service
and a local file server: registration, downloads with resume, checksums, torrents and
magnet links, reports; and its back-off schedule."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torf
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from dispatch.demo.serving import ThreadedServer
from dispatch.fleet import agent
from tests.support import MASTER_KEY, LiveServer, admin_headers, make_settings

ADMIN = admin_headers()
R = "/api/v1/rescue"


class Files(ThreadedServer):
    """Static files with ``Range`` support; a file can be cut off mid-way once."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut_once: set[str] = set()
        self.ranges: list[tuple[str, str]] = []
        super().__init__(Starlette(routes=[Route("/files/{name}", self.serve)]))

    async def serve(self, request: Request) -> Response:
        name = request.path_params["name"]
        data = self.files.get(name)
        if data is None:
            return Response("gone", status_code=404)
        start = 0
        header = request.headers.get("range")
        if header:
            self.ranges.append((name, header))
            start = int(header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return Response(status_code=416)
        body = data[start:]
        headers = {"content-length": str(len(body)), "accept-ranges": "bytes"}
        if name in self.cut_once:
            self.cut_once.discard(name)

            async def half() -> AsyncIterator[bytes]:
                yield body[: len(body) // 2]
                raise ConnectionResetError("cut off")

            return StreamingResponse(half(), status_code=206 if start else 200, headers=headers)
        if start:
            headers["content-range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return Response(body, status_code=206, headers=headers)
        return Response(body, headers=headers)


@pytest.fixture
def files() -> Iterator[Files]:
    server = Files({"big.bin": os.urandom(3 * 1024 * 1024 + 17), "small.bin": os.urandom(200_000)})
    server.start()
    yield server
    server.stop()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_a_node_rescues_what_it_can_and_reports_each_copy(
    db_settings: dict[str, Any], files: Files, tmp_path: Path
) -> None:
    settings = make_settings(**db_settings, rescue_replication_target=1, rescue_node_daily_assets=0)
    big, _small = files.files["big.bin"], files.files["small.bin"]
    files.cut_once.add("big.bin")
    with LiveServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assets = [
                {
                    "ds_id": "d",
                    "res_id": "big",
                    "name": "Big",
                    "url": f"{files.url}/files/big.bin",
                    "size_mb": 3.1,
                    "priority": 1,
                    "checksum": sha256(big),
                },
                {
                    "ds_id": "d",
                    "res_id": "small",
                    "name": "Small",
                    "url": f"{files.url}/files/small.bin",
                    "size_mb": 0.2,
                    "priority": 2,
                    "checksum": sha256(b"something else"),
                },
                {
                    "ds_id": "d",
                    "res_id": "gone",
                    "name": "Gone",
                    "url": f"{files.url}/files/gone.bin",
                    "size_mb": 1,
                    "priority": 3,
                },
            ]
            created = await http.post(f"{R}/assets", json=assets, headers=ADMIN)
            assert created.status_code == 201, created.text
            big_id, small_id, gone_id = created.json()["asset_ids"]

            workdir = tmp_path / "node"
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dispatch",
                "node",
                "run",
                "--server",
                server.url,
                "--token",
                MASTER_KEY,
                "--dir",
                str(workdir),
                "--name",
                "volunteer-1",
                "--description",
                "a test node",
                "--once",
                "--min-backoff",
                "0.2",
                "--max-backoff",
                "0.4",
                "--log-level",
                "WARNING",
                env={"PATH": os.environ.get("PATH", "")},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(process.communicate(), 90)
            assert process.returncode == 0, output.decode()

            state = json.loads((workdir / agent.STATE_FILE).read_text())
            assert state["token"].startswith("dnode_")
            assert oct((workdir / agent.STATE_FILE).stat().st_mode & 0o777) == "0o600"

            detail = (await http.get(f"{R}/assets/{big_id}", headers=ADMIN)).json()
            [copy] = detail["copies"]
            assert copy["state"] == "rescued"
            assert copy["node_id"] == state["node_id"]
            assert copy["checksum"] == sha256(big)
            assert copy["bytes"] == len(big)
            rescued = workdir / "assets" / str(big_id) / "big.bin"
            assert rescued.read_bytes() == big
            # The download was cut off once and resumed where it stopped.
            assert [name for name, _ in files.ranges] == ["big.bin"]
            torrent = torf.Torrent.read(rescued.with_name("big.bin.torrent"))
            assert copy["magnet_link"] == str(torrent.magnet())
            assert copy["magnet_link"].startswith(f"magnet:?xt=urn:btih:{torrent.infohash}")

            for asset_id, _reason in ((small_id, "checksum"), (gone_id, "404")):
                detail = (await http.get(f"{R}/assets/{asset_id}", headers=ADMIN)).json()
                assert detail["copies"][0]["state"] == "waiting"  # free for another node
                assert detail["copies_rescued"] == 0
            nodes = (await http.get(f"{R}/nodes", headers=ADMIN)).json()
            [node] = [row for row in nodes if row["node_id"] == state["node_id"]]
            assert node["name"] == "volunteer-1"
            assert node["description"] == "a test node"
            assert (node["rescued"], node["failed"], node["in_flight"]) == (1, 2, 0)
            assert not (workdir / "assets" / str(small_id) / "small.bin").exists()


def test_backoff_doubles_from_the_minimum_to_the_cap() -> None:
    waits: list[float] = []
    wait: float | None = None
    for _ in range(10):
        wait = agent.backoff(wait, 30, 3600)
        waits.append(wait)
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]


async def test_the_node_backs_off_on_204_429_and_errors(
    tmp_path: Path,
) -> None:
    """One function of the agent (its loop) against scripted answers."""
    answers: Iterator[int | str] = iter([204, 429, 500, "error", 200, 204])
    seen: list[str] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        answer = next(answers)
        if answer == "error":
            raise httpx.ConnectError("refused")
        if answer == 200:
            return httpx.Response(200, json={"node_id": "n1", "asset": [], "heartbeat_seconds": 5})
        return httpx.Response(int(answer))

    config = agent.Config(
        server="http://dispatch.test",
        token="dnode_x",
        directory=tmp_path,
        min_backoff=30,
        max_backoff=100,
    )
    client = httpx.AsyncClient(
        base_url="http://dispatch.test", transport=httpx.MockTransport(reply)
    )
    node = agent.Agent(config, client)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 6:
            node.stopping.set()

    node._sleep = sleep  # type: ignore[method-assign]
    await node.run()
    # 204, 429, 500, a refused connection: 30, 60, 100 (capped), 100; an answer with no
    # copies counts as nothing to do too: 100; after that: 100 again.
    assert waits == [30, 60, 100, 100, 100, 100]
    assert seen == ["/api/v1/rescue/dispatch"] * 6
