"""The reference rescue node: ``dispatch node run --server URL --token T --dir PATH``.

It registers (when ``--token`` is an API key allowed to register nodes; a node token is
used as is), asks for copies that fit its free disk, downloads each with resume (HTTP
``Range``) and checksum verification, makes a torrent and a magnet link of every file
(``torf``), heartbeats while it works (which keeps its leases), reports each result, and
backs off from 30 s, doubling up to an hour, whenever the service has nothing for it
(204), refuses it (429) or fails. Its node token is kept in ``PATH/.dispatch-node.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import structlog

log = structlog.get_logger(__name__)

STATE_FILE = ".dispatch-node.json"
NODE_TOKEN_PREFIX = "dnode_"  # noqa: S105 - how node tokens start, not a secret
CHUNK = 1 << 16
MB = 1 << 20


def backoff(previous: float | None, minimum: float, maximum: float) -> float:
    """The next wait: ``minimum`` first, then doubling, never past ``maximum``."""
    return minimum if previous is None else min(maximum, max(minimum, previous * 2))


@dataclass
class Config:
    server: str
    token: str
    directory: Path
    name: str = "rescue-node"
    description: str = ""
    parallel: int = 2
    reserve_mb: int = 0  # disk kept free besides what downloads need
    min_backoff: float = 30.0
    max_backoff: float = 3600.0
    once: bool = False  # stop when the service has nothing left (tests, one-off runs)


@dataclass
class Download:
    """A copy being rescued: what the service handed out and how far it got."""

    asset: dict[str, Any]
    done: int = 0
    total: int | None = None
    task: asyncio.Task[None] | None = None

    @property
    def job_id(self) -> int:
        return int(self.asset["job_id"])


class Failed(Exception):
    """The copy cannot be made here (the source is gone, the checksum is wrong…)."""


def file_name(url: str, asset_id: int) -> str:
    name = Path(unquote(urlsplit(url).path)).name
    return name or f"asset-{asset_id}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def checksum_matches(path: Path, expected: str) -> tuple[bool, str]:
    """Whether the file has the expected ``algorithm:hex`` checksum; and its sha256."""
    algorithm, _, hexdigest = expected.partition(":")
    actual = sha256_of(path)
    if algorithm == "sha256":
        return actual == expected.lower(), actual
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == hexdigest.lower(), actual


def make_torrent(path: Path) -> str:
    """Write ``path``.torrent next to the file; its magnet link."""
    import torf

    torrent = torf.Torrent(path=path, created_by="Dispatch rescue node", private=False)
    torrent.generate()
    torrent.write(path.with_name(path.name + ".torrent"), overwrite=True)
    return str(torrent.magnet())


class Agent:
    def __init__(self, config: Config, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.client = client or httpx.AsyncClient(base_url=config.server.rstrip("/"), timeout=60)
        self.node_id: str | None = None
        self.token: str | None = None
        self.heartbeat_seconds = 30.0
        self.downloads: dict[int, Download] = {}
        self.wait: float | None = None
        self.stopping = asyncio.Event()

    # Identity ----------------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        assert self.token is not None
        return {"X-Node-Token": self.token}

    def _state_path(self) -> Path:
        return self.config.directory / STATE_FILE

    async def identify(self) -> None:
        """Use the node token, the one saved by an earlier registration, or register now."""
        if self.config.token.startswith(NODE_TOKEN_PREFIX):
            self.token = self.config.token
            return
        saved = self._state_path()
        if saved.exists():
            state = json.loads(saved.read_text())
            self.token, self.node_id = state["token"], state["node_id"]
            return
        response = await self.client.post(
            "/api/v1/rescue/nodes",
            json={
                "name": self.config.name,
                "description": self.config.description,
                "free_space_gb": self.free_mb() / 1024,
                "max_in_flight": self.config.parallel,
            },
            headers={"X-Dispatch-Key": self.config.token},
        )
        response.raise_for_status()
        body = response.json()
        self.token, self.node_id = body["token"], body["node_id"]
        self.heartbeat_seconds = float(body.get("heartbeat_seconds", self.heartbeat_seconds))
        saved.write_text(json.dumps({"node_id": self.node_id, "token": self.token}))
        saved.chmod(0o600)
        log.info("node.registered", node_id=self.node_id)

    # Disk ----------------------------------------------------------------------------------

    def free_mb(self) -> int:
        """Free disk less what running downloads still need and the reserve."""
        free = shutil.disk_usage(self.config.directory).free
        pending = sum(
            max(0, (item.total or int((item.asset.get("size_mb") or 0) * MB)) - item.done)
            for item in self.downloads.values()
        )
        return max(0, (free - pending) // MB - self.config.reserve_mb)

    # The loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        self.config.directory.mkdir(parents=True, exist_ok=True)
        await self.identify()
        beating = asyncio.create_task(self._heartbeats())
        try:
            while not self.stopping.is_set():
                slots = self.config.parallel - len(self.downloads)
                got = await self._ask(slots) if slots > 0 else -1
                if got == 0 and self.config.once and not self.downloads:
                    break
                if got > 0:
                    self.wait = None
                    continue
                if got == 0 or got == -2:  # nothing for us, refused, or an error
                    self.wait = backoff(self.wait, self.config.min_backoff, self.config.max_backoff)
                    log.info("node.backoff", seconds=self.wait)
                    await self._sleep(self.wait)
                else:  # busy: wait for a download to finish
                    await self._sleep(1.0)
            if self.stopping.is_set():
                await self._release_all()
            await asyncio.gather(*(d.task for d in self.downloads.values() if d.task))
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    async def _release_all(self) -> None:
        """Stopping: drop the downloads and hand their copies back at once."""
        held = list(self.downloads.values())
        for item in held:
            if item.task is not None:
                item.task.cancel()
        for item in held:
            with contextlib.suppress(httpx.HTTPError):
                await self.client.post(
                    f"/api/v1/nodes/{self.node_id}/jobs/{item.job_id}/release",
                    json={"lease_token": item.asset["lease_token"]},
                    headers=self.headers,
                )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _ask(self, slots: int) -> int:
        """Ask for work; how many copies came (0: none; -2: refused or failed)."""
        body = {
            "name": self.config.name,
            "description": self.config.description,
            "free_space_gb": self.free_mb() / 1024,
            "node_id": self.node_id,
            "limit": slots,
        }
        try:
            response = await self.client.post(
                "/api/v1/rescue/dispatch", json=body, headers=self.headers
            )
        except httpx.HTTPError as exc:
            log.warning("node.dispatch_failed", error=str(exc))
            return -2
        if response.status_code == 204:
            return 0
        if response.status_code != 200:
            log.warning("node.dispatch_refused", status=response.status_code)
            return -2
        answer = response.json()
        self.node_id = answer["node_id"]
        self.heartbeat_seconds = float(answer.get("heartbeat_seconds", self.heartbeat_seconds))
        for asset in answer["asset"]:
            item = Download(asset)
            item.task = asyncio.create_task(self._rescue(item))
            self.downloads[item.job_id] = item
        return len(answer["asset"])

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            if not self.downloads or self.node_id is None:
                continue
            running = [
                {
                    "job_id": item.job_id,
                    "lease_token": item.asset["lease_token"],
                    "progress": {"bytes": item.done, "total": item.total},
                }
                for item in self.downloads.values()
            ]
            try:
                response = await self.client.post(
                    f"/api/v1/nodes/{self.node_id}/heartbeat",
                    json={"running": running},
                    headers=self.headers,
                )
                response.raise_for_status()
            except httpx.HTTPError as exc:
                log.warning("node.heartbeat_failed", error=str(exc))
                continue
            answer = response.json()
            for job_id in {*answer.get("lost", []), *answer.get("cancelled", [])}:
                item = self.downloads.get(int(job_id))
                if item is not None and item.task is not None:
                    item.task.cancel()

    # One copy ------------------------------------------------------------------------------

    async def _rescue(self, item: Download) -> None:
        asset = item.asset
        folder = self.config.directory / "assets" / str(asset["asset_id"])
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / file_name(asset["url"], asset["asset_id"])
        try:
            await self._fetch(item, target)
            checksum = sha256_of(target)
            if asset.get("checksum"):
                ok, checksum = await asyncio.to_thread(checksum_matches, target, asset["checksum"])
                if not ok:
                    target.unlink()
                    raise Failed(f"checksum {checksum} is not {asset['checksum']}")
            magnet = await asyncio.to_thread(make_torrent, target)
            await self._report(item, "SUCCESS", magnet, checksum, target.stat().st_size)
        except asyncio.CancelledError:
            log.info("node.copy_dropped", job_id=item.job_id)  # lost, cancelled or stopping
        except (Failed, httpx.HTTPError, OSError, ValueError) as exc:
            log.warning("node.copy_failed", job_id=item.job_id, error=str(exc))
            await self._report(item, "FAIL", None, None, None, message=str(exc)[:500])
        finally:
            self.downloads.pop(item.job_id, None)

    async def _fetch(self, item: Download, target: Path) -> None:
        url = item.asset["url"]
        scheme = urlsplit(url).scheme.lower()
        if scheme == "ftp":
            await asyncio.to_thread(_ftp_fetch, url, target)
            return
        if scheme not in ("http", "https"):
            raise Failed("this node downloads http(s) and ftp URLs only")
        partial = target.with_name(target.name + ".part")
        for _ in range(5):  # resume after a dropped connection
            have = partial.stat().st_size if partial.exists() else 0
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                async with (
                    httpx.AsyncClient(timeout=60, follow_redirects=True) as source,
                    source.stream("GET", url, headers=headers) as response,
                ):
                    if response.status_code == 416:  # we have it all already
                        break
                    if response.status_code not in (200, 206):
                        raise Failed(f"the source answered {response.status_code}")
                    resumed = response.status_code == 206
                    length = response.headers.get("content-length")
                    item.total = (have if resumed else 0) + int(length) if length else None
                    item.done = have if resumed else 0
                    with partial.open("ab" if resumed else "wb") as out:
                        async for chunk in response.aiter_bytes(CHUNK):
                            out.write(chunk)
                            item.done += len(chunk)
                if item.total is None or item.done >= item.total:
                    break
            except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
                log.info("node.download_interrupted", job_id=item.job_id, error=str(exc))
                await asyncio.sleep(0.5)
        else:
            raise Failed("the download kept breaking off")
        os.replace(partial, target)

    async def _report(
        self,
        item: Download,
        status: str,
        magnet: str | None,
        checksum: str | None,
        size: int | None,
        message: str | None = None,
    ) -> None:
        asset = item.asset
        entry = {
            "asset_id": asset["asset_id"],
            "job_id": asset["job_id"],
            "lease_token": asset["lease_token"],
            "url": asset["url"],
            "magnet_link": magnet,
            "status": status,
            "checksum": checksum,
            "bytes": size,
            "message": message,
        }
        body = {"rescuer_id": self.node_id, "message": message or "", "assets": [entry]}
        for attempt in range(5):
            try:
                response = await self.client.post(
                    "/api/v1/rescue/assets-downloaded", json=body, headers=self.headers
                )
                response.raise_for_status()
                result = response.json()["results"][0]
                log.info("node.reported", job_id=item.job_id, outcome=result["outcome"])
                return
            except httpx.HTTPError as exc:
                log.warning("node.report_failed", job_id=item.job_id, error=str(exc))
                await asyncio.sleep(min(30.0, 2.0**attempt))


def _ftp_fetch(url: str, target: Path) -> None:
    partial = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as source, partial.open("wb") as out:  # noqa: S310 - ftp only
        shutil.copyfileobj(source, out, CHUNK)
    os.replace(partial, target)


def run(config: Config) -> None:
    """Run the agent until it is interrupted (or, with ``once``, until nothing is left)."""

    async def main() -> None:
        agent = Agent(config)
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, agent.stopping.set)
        try:
            await agent.run()
        finally:
            await agent.client.aclose()

    asyncio.run(main())
