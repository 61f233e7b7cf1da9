"""``dispatch demo``: Dispatch on SQLite with its outside world played on loopback.

One process runs, each on 127.0.0.1:
- the service (API, admin UI, embedded worker), its database a file in the demo directory;
- stand-ins for every catalogue provider, serving the project's recorded answers;
- the demo console: webhook destinations, files to rescue and an SMTP server, with a page
  showing what the service sent;
- two rescue nodes (the reference agent), keeping their copies in the demo directory.

It then sets up a gateway endpoint with two destinations and a client, a watch user with a
rule, a catalogue product, and rescue assets; writes what it made to ``demo.json``; prints what
to open and what to try; and runs until interrupted. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from dispatch.app import create_app
from dispatch.config import Settings
from dispatch.demo.mail import smtp_server
from dispatch.demo.providers import FakeProviders, provider_settings
from dispatch.demo.receivers import DemoFile, Receivers
from dispatch.demo.serving import ThreadedServer
from dispatch.fleet import agent

MARKER = "demo.json"
V1 = "/api/v1"
USER_EMAIL = "demo@example.com"
ENDPOINT_PATH = "orders"
WATCHED_PROVIDER = "goat"
FILES = [  # (name, bytes): small, so the demo's rescue finishes in seconds
    ("sea-ice-extent-1979-2024.csv", 1_800_000),
    ("glacier-mass-balance.nc", 2_400_000),
    ("coastal-tide-gauges.parquet", 900_000),
    ("wildfire-perimeters-2023.geojson", 1_500_000),
    ("river-discharge-daily.csv", 600_000),
    ("ozone-column-monthly.nc", 1_200_000),
]
NODE_NAMES = ("nas-berlin", "nas-lisbon")


class DemoError(Exception):
    """The demo cannot start (its port is taken, its directory is someone else's)."""


class DemoSettings(Settings):
    """Settings from the demo alone: nothing read from the environment or a .env file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


@dataclass
class Demo:
    """What the demo made: addresses and credentials, as written to ``demo.json``."""

    directory: Path
    dispatch_url: str
    console_url: str
    admin_key: str
    admin_password: str
    user_email: str
    user_password: str
    user_key: str
    client_token: str
    endpoint_url: str
    rule_id: int
    product_id: str
    asset_ids: list[int]
    nodes: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "dispatch_url": self.dispatch_url,
            "console_url": self.console_url,
            "admin_key": self.admin_key,
            "admin_password": self.admin_password,
            "user": {
                "email": self.user_email,
                "password": self.user_password,
                "key": self.user_key,
            },
            "gateway": {"endpoint_url": self.endpoint_url, "client_token": self.client_token},
            "watch_rule_id": self.rule_id,
            "product_id": self.product_id,
            "asset_ids": self.asset_ids,
            "nodes": self.nodes,
        }


def prepare_directory(directory: Path) -> None:
    """An empty directory for this run; an earlier demo's is reset, anything else refused."""
    if directory.exists():
        if not directory.is_dir():
            raise DemoError(f"{directory} is not a directory")
        if any(directory.iterdir()):
            if not (directory / MARKER).exists():
                raise DemoError(
                    f"{directory} is not empty and holds no earlier demo; choose another with --dir"
                )
            shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def demo_settings(
    directory: Path, port: int, providers: FakeProviders, secrets_: dict[str, str]
) -> Settings:
    """The service's settings: SQLite in the demo directory, every provider a stand-in. (The
    SMTP server is set through the gateway's settings API, as an operator would.)"""
    values: dict[str, Any] = {
        **provider_settings(providers),
        "environment": "development",
        "database_url": f"sqlite:///{directory / 'dispatch.db'}",
        "host": "127.0.0.1",
        "port": port,
        "master_key": secrets_["admin_key"],
        "gateway_admin_password": secrets_["admin_password"],
        "secret_key": secrets_["secret_key"],
        "log_level": "WARNING",
        "log_format": "console",
        # Destinations, webhooks and files are on loopback, which is refused by default.
        "gateway_allowed_networks": "127.0.0.0/8",
        # Snappy rather than frugal: a demo is watched by a person.
        "worker_poll_interval_seconds": 0.2,
        "gateway_retry_base_seconds": 1.0,
        "gateway_retry_cap_seconds": 10.0,
        "scrape_interval_seconds": 60,
        "watch_event_cooldown_seconds": 0,
        "default_timeout_seconds": 5.0,
        "rescue_replication_target": 2,
        "node_silent_seconds": 30,
    }
    return DemoSettings(**values)


def _stop_on_signals() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets (handlers exist only on the main thread)."""
    stop = asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
    return stop


def _goat_hits(providers: FakeProviders) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = providers.algolia["hits"]
    return hits


def sale(providers: FakeProviders, percent: int = 15) -> int:
    """The GOAT stand-in lowers every priced listing by ``percent``; how many changed."""
    changed = 0
    for hit in _goat_hits(providers):
        if hit.get("lowest_price_cents"):
            hit["lowest_price_cents"] = int(hit["lowest_price_cents"] * (100 - percent) / 100)
            changed += 1
    return changed


def restock(providers: FakeProviders, price_cents: int = 19_900) -> int:
    """The GOAT stand-in's sold-out listings come back in stock; how many did."""
    changed = 0
    for hit in _goat_hits(providers):
        if not hit.get("lowest_price_cents") or not hit.get("has_stock", True):
            hit["lowest_price_cents"] = price_cents
            hit["has_stock"] = True
            changed += 1
    return changed


class _Api:
    """The service's API with the admin key, failing loudly on anything unexpected."""

    def __init__(self, base_url: str, key: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url, timeout=30, headers={"X-Dispatch-Key": key}
        )

    async def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        answer = await self.http.request(method, path, **kwargs)
        if answer.status_code != expect:
            raise DemoError(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json() if answer.content else None

    async def close(self) -> None:
        await self.http.aclose()


async def set_up(
    api: _Api,
    dispatch_url: str,
    receivers: Receivers,
    smtp_port: int,
    secrets_: dict[str, str],
    files: list[DemoFile],
) -> dict[str, Any]:
    """Everything the demo shows, made through the public API as a user would."""
    await api.call(
        "PUT",
        f"{V1}/gateway/settings",
        200,
        json={
            "smtp_server": "127.0.0.1",
            "smtp_port": smtp_port,
            "smtp_encryption": "none",
            "email_from": "dispatch@demo.invalid",
        },
    )
    resources = [
        await api.call(
            "POST",
            f"{V1}/gateway/resources",
            201,
            json={
                "name": name,
                "url": receivers.hook_url(name),
                "timeout_seconds": 5,
                "send_failure_email": True,
                "notification_email": "ops@demo.invalid",
                "health_check_enabled": True,
                "health_check_interval_min": 30,
                "health_check_interval_max": 300,
            },
        )
        for name in ("primary", "backup")
    ]
    endpoint = await api.call(
        "POST",
        f"{V1}/gateway/endpoints",
        201,
        json={
            "path": ENDPOINT_PATH,
            "description": "Orders from the demo shop, delivered to primary, else backup",
            "required_params": ["order_id"],
            "resource_ids": [r["id"] for r in resources],
            "max_attempts": 5,
        },
    )
    client = await api.call(
        "POST",
        f"{V1}/gateway/clients",
        201,
        json={"name": "demo-shop", "endpoint_ids": [endpoint["id"]]},
    )
    user = await api.call(
        "POST",
        f"{V1}/users",
        201,
        json={
            "email": USER_EMAIL,
            "password": secrets_["user_password"],
            "display_name": "Demo User",
            "preferences": {
                "notifications_email": True,
                "notifications_webhook": True,
                "webhook_urls": [receivers.hook_url("watch-alerts")],
                "delivery_frequency": "instant",
            },
        },
    )
    user_key = await api.call("POST", f"{V1}/users/{user['id']}/keys", 201, json={"name": "demo"})
    as_user = {"X-Dispatch-Key": user_key["key"]}
    rule = await api.call(
        "POST",
        f"{V1}/watch-rules",
        201,
        headers=as_user,
        json={
            "name": "Air Jordans under $250",
            "query": {"sources": [WATCHED_PROVIDER], "keywords": ["jordan"], "max_price": 250},
            "poll_interval_seconds": 60,
            "notify_on": {"new_match": True, "price_drop": True, "back_in_stock": True},
        },
    )
    product = await api.call(
        "POST",
        f"{V1}/products",
        201,
        json={"name": "Air Jordan 1 Retro High OG", "description": "Tracked at the offers service"},
    )
    imported = await api.call(
        "POST",
        f"{V1}/rescue/assets",
        201,
        json=[
            {
                "ds_id": "climate-archive",
                "res_id": f"r{n}",
                "name": item.name,
                "path": f"climate-archive/{item.name}",
                "url": receivers.file_url(item.name),
                "size_mb": round(item.size / 1_000_000, 3),
                "checksum": item.checksum,
                "priority": 100 - n,
            }
            for n, item in enumerate(files)
        ],
    )
    # The first sync of every provider now (they are also on their schedules), and a first order.
    providers = await api.call("GET", f"{V1}/providers", 200)
    for provider in providers["details"]:
        if provider["enabled"]:
            await api.call("POST", f"{V1}/providers/{provider['name']}/sync", 202)
    async with httpx.AsyncClient(timeout=30) as http:
        order = await http.post(
            f"{dispatch_url}/api/{ENDPOINT_PATH}",
            json={"order_id": "A-1001", "total": 42.5, "currency": "EUR"},
            headers={"X-API-Token": client["token"]},
        )
    if order.status_code != 202:
        raise DemoError(f"the first order was refused: {order.status_code} {order.text[:300]}")
    return {
        "client_token": client["token"],
        "user_key": user_key["key"],
        "rule_id": rule["id"],
        "product_id": product["id"],
        "asset_ids": [int(n) for n in imported["asset_ids"]],
    }


def guide(demo: Demo) -> str:
    """What to open and what to try, printed once everything is up."""
    d, key = demo.dispatch_url, demo.admin_key
    return f"""
Dispatch demo is running. Everything is on 127.0.0.1 and works offline; Ctrl-C stops it.
Its data, the nodes' rescued files and demo.json (these credentials) are in {demo.directory}.

Open
  Admin UI       {d}/ui           log in with the password {demo.admin_password}
                                    (or the admin key below)
  Watch UI       {d}/ui/login?tab=user   as {demo.user_email} / {demo.user_password}
  API reference  {d}/docs
  Demo console   {demo.console_url}   webhooks and e-mail the service sent; buttons that
                                    take a destination down or put sneakers on sale

  Admin API key  {key}

Try
  1. Gateway: send an order. It becomes a durable task, delivered to 'primary' (see the console):
       curl -X POST {demo.endpoint_url} -H 'X-API-Token: {demo.client_token}' \\
            -H 'Content-Type: application/json' -d '{{"order_id": "A-1002", "total": 19.99}}'
     Press "Take primary down" in the console and send a few more: each fails over to 'backup'.
     After five failures primary's breaker opens (orders go straight to backup) and an alert
     e-mail arrives; bring it back up and its health check closes the breaker again.
     Tasks and their attempts: {d}/ui/gateway/tasks

  2. Catalogue: the providers' stand-ins were synced; search what they served:
       curl '{d}{V1}/products?q=jordan' -H 'X-Dispatch-Key: {key}'

  3. Watch: {demo.user_email} has the rule "Air Jordans under $250" on GOAT. Its matches are in
     the feed ({d}/ui/watch); follow its live stream:
       curl -N {d}{V1}/stream/events -H 'X-Dispatch-Key: {demo.user_key}'
     then press "GOAT sale: 15% off" or "GOAT restock" in the console: price-drop and
     back-in-stock alerts arrive on the stream, by e-mail and by webhook.

  4. Fleet: volunteer nodes {" and ".join(demo.nodes)} are rescuing {len(demo.asset_ids)} files,
     two copies each, into {demo.directory / "nodes"}: {d}/ui/fleet
"""


def run_demo(
    directory: Path,
    port: int = 8000,
    console_port: int | None = None,
    ready: Callable[[Demo], None] | None = None,
) -> None:
    """Run the demo until SIGINT or SIGTERM."""
    directory = directory.resolve()
    if not port_is_free(port):
        raise DemoError(f"port {port} on 127.0.0.1 is in use; choose another with --port")
    prepare_directory(directory)
    # The marker first: a run that fails half-way still leaves a directory the next one resets.
    _write_private(directory / MARKER, {})
    asyncio.run(_run(directory, port, console_port, ready))


async def _run(
    directory: Path, port: int, console_port: int | None, ready: Callable[[Demo], None] | None
) -> None:
    secrets_ = {
        "admin_key": "dsp_demo_" + secrets.token_urlsafe(24),
        "admin_password": "demo-" + secrets.token_urlsafe(9),
        "secret_key": secrets.token_urlsafe(32),
        "user_password": "watch-" + secrets.token_urlsafe(9),
    }
    files = [DemoFile(name, size) for name, size in FILES]
    stop = _stop_on_signals()
    with contextlib.ExitStack() as stack:
        providers = stack.enter_context(FakeProviders())
        mailbox, smtp_port = stack.enter_context(smtp_server())
        receivers = stack.enter_context(Receivers(mailbox, files, console_port))
        providers.serve_images_from(receivers.url)  # no picture comes from the internet
        settings = demo_settings(directory, port, providers, secrets_)
        dispatch = stack.enter_context(ThreadedServer(create_app(settings), port))
        api = _Api(dispatch.url, secrets_["admin_key"])
        agents: list[agent.Agent] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            made = await set_up(api, dispatch.url, receivers, smtp_port, secrets_, files)
            _console_actions(receivers, providers, dispatch.url, secrets_["admin_key"])
            for name in NODE_NAMES:
                node = agent.Agent(
                    agent.Config(
                        server=dispatch.url,
                        token=secrets_["admin_key"],
                        directory=directory / "nodes" / name,
                        name=name,
                        description="A volunteer's NAS (demo)",
                        parallel=2,
                        min_backoff=2.0,
                        max_backoff=15.0,
                    )
                )
                agents.append(node)
                tasks.append(asyncio.create_task(node.run()))
            demo = Demo(
                directory=directory,
                dispatch_url=dispatch.url,
                console_url=receivers.url + "/",
                admin_key=secrets_["admin_key"],
                admin_password=secrets_["admin_password"],
                user_email=USER_EMAIL,
                user_password=secrets_["user_password"],
                user_key=made["user_key"],
                client_token=made["client_token"],
                endpoint_url=f"{dispatch.url}/api/{ENDPOINT_PATH}",
                rule_id=made["rule_id"],
                product_id=made["product_id"],
                asset_ids=made["asset_ids"],
                nodes=list(NODE_NAMES),
            )
            _write_private(directory / MARKER, demo.as_json())
            if ready is not None:
                ready(demo)
            waiting = asyncio.create_task(stop.wait())
            await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:  # an agent that stopped on its own is an error worth showing
                if task.done() and task.exception() is not None:
                    raise DemoError(f"a rescue node stopped: {task.exception()!r}")
            waiting.cancel()
        finally:
            for node in agents:
                node.stopping.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
            for node in agents:
                await node.client.aclose()
            await api.close()


def _write_private(path: Path, payload: dict[str, Any]) -> None:
    """JSON readable by its owner alone (it holds the demo's keys)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an earlier file keeps its mode through O_CREAT
    with os.fdopen(descriptor, "wb") as file:
        file.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2))


def _console_actions(
    receivers: Receivers, providers: FakeProviders, dispatch_url: str, admin_key: str
) -> None:
    """The console's buttons that change the GOAT stand-in, then ask for a sync at once."""

    async def resync() -> None:
        async with httpx.AsyncClient(base_url=dispatch_url, timeout=30) as http:
            await http.post(
                f"{V1}/providers/{WATCHED_PROVIDER}/sync", headers={"X-Dispatch-Key": admin_key}
            )

    async def on_sale() -> str:
        changed = sale(providers)
        await resync()
        return f"GOAT: {changed} listings 15% off; a sync of GOAT was asked for"

    async def on_restock() -> str:
        changed = restock(providers)
        await resync()
        return f"GOAT: {changed} sold-out listings back in stock; a sync of GOAT was asked for"

    receivers.actions["sale"] = ("GOAT sale: 15% off", on_sale)
    receivers.actions["restock"] = ("GOAT restock", on_restock)
