"""``dispatch demo`` as a new user runs it: a real process, then the flow its guide suggests.

The gateway delivers and fails over, the watch user is alerted by stream, e-mail and webhook
when the GOAT stand-in puts its sneakers on sale, the catalogue holds what the stand-ins served,
and both rescue nodes keep a verified copy of every file. SIGINT stops it cleanly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from dispatch.demo.providers import IMAGE_HOSTS, FakeProviders, load, local_images
from dispatch.demo.receivers import DemoFile
from dispatch.demo.run import (
    FILES,
    MARKER,
    DemoError,
    demo_settings,
    prepare_directory,
    restock,
    sale,
)
from dispatch.demo.serving import free_port
from tests.demo.running import RunningDemo, running_demo

V1 = "/api/v1"
STARTUP_SECONDS = 90


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[RunningDemo]:
    with running_demo(tmp_path) as running:
        yield running


async def _until(what: str, check: Any, seconds: float = 45) -> Any:
    """Poll ``check`` (an async callable) until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(300)
async def test_the_demo_runs_offline_and_its_guide_holds(demo: RunningDemo) -> None:
    info = demo.wait_ready()
    service, console = info["dispatch_url"], info["console_url"].rstrip("/")
    admin = {"X-Dispatch-Key": info["admin_key"]}
    as_user = {"X-Dispatch-Key": info["user"]["key"]}
    client = {"X-API-Token": info["gateway"]["client_token"]}
    # The guide names what to open and the credentials to use.
    for shown in (service + "/ui", service + "/docs", console, info["admin_key"]):
        assert shown in demo.output
    assert info["user"]["password"] in demo.output
    assert (demo.directory / MARKER).stat().st_mode & 0o077 == 0  # it holds the keys

    async with httpx.AsyncClient(base_url=service, timeout=30) as http:
        # The UI is up, and the admin password from the guide logs in.
        assert (await http.get("/ui/login")).status_code == 200
        assert (await http.get("/health")).status_code == 200

        # Gateway: the first order went to 'primary', signed; with primary down, orders fail
        # over to 'backup' and become one task each.
        async def hooks(destination: str) -> list[dict[str, Any]]:
            answer = await http.get(f"{console}/api/hooks", params={"destination": destination})
            listed: list[dict[str, Any]] = answer.json()
            return listed

        first = await _until("the first order", lambda: hooks("primary"))
        assert first[0]["body"]["order_id"] == "A-1001"
        assert first[0]["headers"]["webhook-id"].startswith("msg_")
        assert first[0]["headers"]["webhook-signature"].startswith("v1,")
        down = await http.post(f"{console}/api/hooks/primary/down")
        assert down.json() == {"destination": "primary", "down": True}
        order = await http.post(
            info["gateway"]["endpoint_url"], json={"order_id": "B-1", "total": 5}, headers=client
        )
        assert order.status_code == 202, order.text
        task_id = order.json()["task_id"]

        async def backup_has_it() -> bool:
            return any(h["body"]["order_id"] == "B-1" for h in await hooks("backup"))

        await _until("the failover to backup", backup_has_it)
        task = (await http.get(f"{V1}/gateway/tasks/{task_id}", headers=admin)).json()
        assert task["status"] == "success"
        assert [(a["resource_name"], a["status_code"]) for a in task["attempt_log"]] == [
            ("primary", 503),
            ("backup", 200),
        ]
        missing = await http.post(info["gateway"]["endpoint_url"], json={}, headers=client)
        assert missing.status_code == 422  # order_id is required

        # Catalogue: every stand-in was synced; the GOAT listings and the tracked product are
        # searchable.
        async def synced() -> dict[str, Any] | None:
            page = (await http.get(f"{V1}/products", params={"q": "jordan"}, headers=admin)).json()
            providers = {item["provider"] for item in page["items"]}
            return page if {"goat", "offers"} <= providers else None

        await _until("the catalogue sync", synced)
        product = await http.get(f"{V1}/products/{info['product_id']}", headers=admin)
        assert product.status_code == 200
        # Offline: the products' pictures come from the console, not the providers' CDNs.
        page = (await http.get(f"{V1}/products", params={"q": "jordan"}, headers=admin)).json()
        pictures = [image for item in page["items"] for image in item["images"]]
        assert pictures
        assert all(image.startswith(console + "/images/") for image in pictures), pictures
        picture = await http.get(pictures[0])
        assert picture.headers["content-type"] == "image/svg+xml"
        assert picture.text.startswith("<svg")

        # Watch: the rule's first matches were alerted by webhook and e-mail.
        async def alerts(kind: str) -> list[dict[str, Any]]:
            return [h for h in await hooks("watch-alerts") if h["body"].get("type") == kind]

        matched = await _until("new-match webhooks", lambda: alerts("NEW_MATCH"))
        titles = {h["body"]["event"]["payload"]["listing"]["title"] for h in matched}
        assert all("Jordan" in title for title in titles), titles

        async def mail() -> list[dict[str, str]]:
            answer: list[dict[str, str]] = (await http.get(f"{console}/api/mail")).json()
            return [m for m in answer if m["to"] == info["user"]["email"]]

        first_mail = await _until("the alert e-mail", mail)
        assert "watch alert" in first_mail[0]["subject"]

        # The live stream carries the price drops the console's sale causes.
        async with http.stream("GET", f"{V1}/stream/events", headers=as_user) as stream:
            assert stream.status_code == 200
            said = await http.post(f"{console}/api/sale")
            assert "15% off" in said.json()["done"]
            event: dict[str, Any] = {}
            async with asyncio.timeout(45):
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        event = json.loads(line.removeprefix("data:"))
                        if event.get("event_type") == "PRICE_DROP":
                            break
        assert event["event_type"] == "PRICE_DROP"
        drops = await _until("price-drop webhooks", lambda: alerts("PRICE_DROP"))
        assert drops
        await _until("a second e-mail", lambda: _more(mail, len(first_mail)))

        # Fleet: both nodes rescued every file; the copies on disk match the checksums.
        async def rescued() -> list[dict[str, Any]] | None:
            assets = (await http.get(f"{V1}/rescue/assets", headers=admin)).json()
            done = [a for a in assets if a["copies_rescued"] == 2]
            return assets if len(done) == len(FILES) else None

        assets = await _until("every file rescued twice", rescued, seconds=90)
        assert {a["asset_id"] for a in assets} == set(info["asset_ids"])
        assert all(len(set(a["nodes"])) == 2 for a in assets)  # two different nodes each
        for asset in assets:
            copies = list((demo.directory / "nodes").glob(f"*/assets/*/{asset['name']}"))
            assert len(copies) == 2, asset["name"]
            assert {_sha256(path) for path in copies} == {asset["checksum"]}

        # The console page shows what was sent, and its buttons work as forms.
        page = await http.get(f"{console}/")
        assert "B-1" in page.text
        assert "listings 15% off" in page.text
        assert 'action="/api/hooks/primary/up"' in page.text  # primary is down
        back = await http.post(f"{console}/api/hooks/primary/up", headers={"Accept": "text/html"})
        assert back.status_code == 303
        assert 'action="/api/hooks/primary/down"' in (await http.get(f"{console}/")).text

    # Ctrl-C stops everything and says so.
    demo.process.send_signal(signal.SIGINT)
    rest, _ = demo.process.communicate(timeout=60)
    assert demo.process.returncode == 0, rest
    assert "Dispatch demo stopped." in rest


async def _more(mail: Any, than: int) -> bool:
    return len(await mail()) > than


def test_every_address_the_demo_gives_the_service_is_loopback(tmp_path: Path) -> None:
    """Offline: no provider, database or telemetry address leaves 127.0.0.1."""
    secrets_ = {"admin_key": "dsp_" + "k" * 40, "admin_password": "p" * 16, "secret_key": "s" * 32}
    with FakeProviders() as providers:
        settings = demo_settings(tmp_path, free_port(), providers, secrets_)
    urls = {
        name: str(value)
        for name, value in settings.model_dump().items()
        if value is not None and (name.endswith("_url") or name.endswith("_endpoint"))
    }
    assert urls["database_url"].startswith("sqlite:///")
    outside = {
        name: url
        for name, url in urls.items()
        if name != "database_url" and urlsplit(url).hostname != "127.0.0.1"
    }
    # Discogs' site (OAuth pages a user's browser opens) is never called by the service.
    assert outside == {"discogs_site_url": "https://www.discogs.com/"}
    assert settings.telemetry_endpoint is None
    assert settings.redis_url is None


def test_the_environment_does_not_reach_the_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("TELEMETRY_ENDPOINT=https://telemetry.example.com/\n")
    secrets_ = {"admin_key": "dsp_" + "k" * 40, "admin_password": "p" * 16, "secret_key": "s" * 32}
    with FakeProviders() as providers:
        settings = demo_settings(tmp_path, 8000, providers, secrets_)
    assert settings.database_url == f"sqlite:///{tmp_path / 'dispatch.db'}"
    assert settings.redis_url is None
    assert settings.telemetry_endpoint is None


def test_a_directory_is_reset_only_if_an_earlier_demo_made_it(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / MARKER).write_text("{}")
    (earlier / "dispatch.db").write_text("old")
    prepare_directory(earlier)
    assert list(earlier.iterdir()) == []
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(DemoError, match="not empty"):
        prepare_directory(mine)
    assert (mine / "thesis.tex").read_text() == "precious"


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        answer = subprocess.run(
            [
                sys.executable,
                "-m",
                "dispatch",
                "demo",
                "--dir",
                str(tmp_path / "d"),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            check=False,
        )
    assert answer.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in answer.stderr


def test_the_sale_and_restock_change_the_goat_stand_in() -> None:
    providers = FakeProviders()  # not started: only its recorded answers are used
    hits = providers.algolia["hits"]
    before = [hit.get("lowest_price_cents") for hit in hits]
    assert sale(providers) == sum(1 for price in before if price)
    after = [hit.get("lowest_price_cents") for hit in hits]
    assert [a for a in after if a] == [int(b * 0.85) for b in before if b]
    assert restock(providers) == sum(1 for price in before if not price)
    assert all(hit["lowest_price_cents"] and hit["has_stock"] for hit in hits)


def test_demo_files_are_deterministic_with_their_checksums() -> None:
    one, again = DemoFile("a.csv", 100_001), DemoFile("a.csv", 100_001)
    assert len(one.data) == 100_001
    assert one.data == again.data
    assert one.checksum == again.checksum
    assert DemoFile("b.csv", 100_001).data != one.data
    assert one.checksum == "sha256:" + hashlib.sha256(one.data).hexdigest()


def _pictures(value: Any) -> list[str]:
    """Every string in ``value`` that is a URL on one of the providers' image hosts."""
    if isinstance(value, dict):
        return [url for item in value.values() for url in _pictures(item)]
    if isinstance(value, list):
        return [url for item in value for url in _pictures(item)]
    return [value] if isinstance(value, str) and urlsplit(value).hostname in IMAGE_HOSTS else []


def test_every_recorded_picture_is_served_locally() -> None:
    """Each recorded answer names pictures on the providers' hosts; none is left after."""
    names = ["goat/algolia_query_jordan.json", "shopify/products_storefront_bjjfanatics.json"]
    names += [
        "ebay/item_summary_search_sneakers.json",
        "discogs/database_search_modern_dj_healer.json",
    ]
    for name in names:
        assert _pictures(load(name)), name
        moved = local_images(load(name), "http://x")
        assert _pictures(moved) == [], name
        assert "http://x/images/" in json.dumps(moved)
    # The same picture gets the same local address; other URLs are left alone.
    picture = "https://image.goat.com/p.png"
    same = local_images({"a": picture, "b": [picture]}, "")
    assert same["a"] == same["b"][0]
    page = {"url": "https://www.goat.com/sneakers/x"}
    assert local_images(page, "") == page
