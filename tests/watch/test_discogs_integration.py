"""Seed 003's Discogs integration against a fake Discogs on loopback: linking by name, by
personal token and by a real OAuth 1.0a handshake; importing wantlists and collections
into watch releases (pages, resumption, removals, deletions kept); its routes' shapes,
errors and isolation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from dispatch.catalog.context import CatalogContext
from dispatch.catalog.provider import ProviderUnavailable
from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import Job, WatchAccountLink, WatchImportJob, WatchOAuthState
from dispatch.watch import integrations
from tests.support import make_settings, running_app
from tests.watch.conftest import ADMIN, V1, WatchUser, new_user
from tests.watch.discogs_fake import FakeDiscogs, discogs_settings, query_of, release
from tests.web.test_watch_ui import token_of, user_login

BASE = f"{V1}/integrations/discogs"


@pytest.fixture
def discogs() -> Iterator[FakeDiscogs]:
    with FakeDiscogs() as server:
        yield server


@pytest.fixture
def settings_for(db_settings: dict[str, Any], discogs: FakeDiscogs) -> Settings:
    return make_settings(**db_settings, **discogs_settings(discogs), discogs_sync_enabled=False)


@pytest.fixture
async def app(settings_for: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings_for) as client:
        yield client


@pytest.fixture
async def worker_app(settings_for: Settings) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for.model_copy(
        update={"worker_enabled": True, "worker_poll_interval_seconds": 0.1}
    )
    async with running_app(settings) as client:
        yield client


@pytest.fixture
async def database(settings_for: Settings) -> AsyncIterator[Database]:
    db = Database(settings_for)
    yield db
    await db.dispose()


async def oauth_connect(
    http: httpx.AsyncClient, discogs: FakeDiscogs, user: WatchUser, username: str
) -> dict[str, Any]:
    """The browser flow: start, Discogs' authorise page, the redirect back to Dispatch."""
    started = await http.post(f"{BASE}/oauth/start", json={}, headers=user.headers)
    assert started.status_code == 200, started.text
    discogs.approve_as = username
    async with httpx.AsyncClient() as browser:
        approved = await browser.get(started.json()["authorize_url"])
    assert approved.status_code == 302
    back = approved.headers["location"].removeprefix("http://testserver")
    landed = await http.get(back)
    assert landed.status_code == 303
    assert landed.headers["location"] == "/ui/watch/preferences?discogs=connected"
    status = await http.get(f"{BASE}/status", headers=user.headers)
    result: dict[str, Any] = status.json()
    return result


async def finished(
    http: httpx.AsyncClient, user: WatchUser, job_id: int, seconds: float = 30
) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        while True:
            response = await http.get(f"{BASE}/import/{job_id}", headers=user.headers)
            assert response.status_code == 200, response.text
            job: dict[str, Any] = response.json()
            if job["status"] in ("succeeded", "failed"):
                return job
            await asyncio.sleep(0.1)


async def releases_of(http: httpx.AsyncClient, user: WatchUser) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    offset = 0
    while True:
        page = await http.get(
            f"{V1}/watch-releases",
            params={"limit": 200, "offset": offset},
            headers=user.headers,
        )
        assert page.status_code == 200, page.text
        for item in page.json():
            found[item["discogs_release_id"]] = item
        if len(page.json()) < 200:
            return found
        offset += 200


# Linking ------------------------------------------------------------------------------


async def test_status_connect_by_name_and_by_personal_token(
    app: httpx.AsyncClient, database: Database
) -> None:
    alice = await new_user(app, "alice@example.com")
    status = await app.get(f"{BASE}/status", headers=alice.headers)
    assert status.status_code == 200
    assert status.json()["connected"] is False
    assert status.json()["oauth_available"] is True

    by_name = await app.post(
        f"{BASE}/connect", json={"external_user_id": "alice_dg"}, headers=alice.headers
    )
    assert by_name.status_code == 200, by_name.text
    body = by_name.json()
    assert {k: body[k] for k in ("connected", "provider", "external_user_id")} == {
        "connected": True,
        "provider": "discogs",
        "external_user_id": "alice_dg",
    }
    assert body["has_access_token"] is False
    assert body["auth"] == "none"
    me = (await app.get(f"{V1}/me", headers=alice.headers)).json()
    assert {"provider": "discogs", "linked": True, "watch_rule_count": 0} in me["integrations"]

    token = await app.post(
        f"{BASE}/connect",
        json={
            "external_user_id": "alice_dg",
            "access_token": "personal-123",
            "token_metadata": {"label": "laptop"},
        },
        headers=alice.headers,
    )
    assert token.json()["has_access_token"] is True
    assert token.json()["auth"] == "personal"
    async with database.session(write=False) as session:
        link = await session.scalar(select(WatchAccountLink))
        assert link is not None
        assert link.access_token is not None
        assert link.access_token.startswith("enc:v1:")
        assert "personal-123" not in link.access_token
        assert link.token_metadata == {"label": "laptop"}


async def test_oauth_1_0a_through_the_browser_redirect(
    app: httpx.AsyncClient, discogs: FakeDiscogs
) -> None:
    alice = await new_user(app, "alice@example.com")
    status = await oauth_connect(app, discogs, alice, "alice_dg")
    assert status["connected"] is True
    assert status["external_user_id"] == "alice_dg"  # learnt from /oauth/identity
    assert status["auth"] == "oauth1"
    assert status["has_access_token"] is True
    assert status["scopes"] == ["identity", "wantlist", "collection"]
    assert discogs.bad_signatures == 0
    assert not discogs.pending  # the temporary token was exchanged


async def test_oauth_callback_in_seed_003s_shape_and_its_refusals(
    app: httpx.AsyncClient, discogs: FakeDiscogs, database: Database
) -> None:
    alice = await new_user(app, "alice@example.com")
    bob = await new_user(app, "bob@example.com")
    started = await app.post(
        f"{BASE}/oauth/start", json={"scopes": ["wantlist"]}, headers=alice.headers
    )
    body = started.json()
    assert set(body) == {"provider", "authorize_url", "state", "scopes", "expires_at"}
    assert body["scopes"] == ["wantlist"]
    assert body["authorize_url"].startswith(f"{discogs.url}/oauth/authorize?oauth_token=")
    discogs.approve_as = "alice_dg"
    async with httpx.AsyncClient() as browser:
        approved = await browser.get(body["authorize_url"])
    verifier = query_of(approved.headers["location"])["oauth_verifier"]

    others = await app.post(
        f"{BASE}/oauth/callback",
        json={"state": body["state"], "code": verifier},
        headers=bob.headers,
    )
    assert others.status_code == 404  # bob cannot finish alice's authorisation
    wrong = await app.post(
        f"{BASE}/oauth/callback",
        json={"state": body["state"], "code": "not-the-verifier"},
        headers=alice.headers,
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["code"] == "oauth_failed"
    assert wrong.json()["error"]["request_id"]
    again = await app.post(
        f"{BASE}/oauth/callback",
        json={"state": body["state"], "code": verifier},
        headers=alice.headers,
    )
    assert again.status_code == 404  # a state is used once, even when it failed

    # A fresh start, finished in time, in seed 003's {state, code} shape.
    started = (await app.post(f"{BASE}/oauth/start", headers=alice.headers)).json()
    async with httpx.AsyncClient() as browser:
        approved = await browser.get(started["authorize_url"])
    verifier = query_of(approved.headers["location"])["oauth_verifier"]
    done = await app.post(
        f"{BASE}/oauth/callback",
        json={"state": started["state"], "code": verifier},
        headers=alice.headers,
    )
    assert done.status_code == 200, done.text
    assert done.json()["external_user_id"] == "alice_dg"

    # An expired state.
    started = (await app.post(f"{BASE}/oauth/start", headers=alice.headers)).json()
    async with database.session() as session:
        await session.execute(
            update(WatchOAuthState).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    expired = await app.post(
        f"{BASE}/oauth/callback",
        json={"state": started["state"], "code": "whatever"},
        headers=alice.headers,
    )
    assert expired.status_code == 422
    assert expired.json()["error"]["code"] == "oauth_state_expired"


async def test_a_denied_authorisation_lands_on_the_preferences_page(
    app: httpx.AsyncClient, discogs: FakeDiscogs
) -> None:
    alice = await new_user(app, "alice@example.com")
    started = (await app.post(f"{BASE}/oauth/start", headers=alice.headers)).json()
    token = query_of(started["authorize_url"])["oauth_token"]
    denied = await app.get(f"{BASE}/oauth/callback", params={"denied": token})
    assert denied.status_code == 303
    assert denied.headers["location"] == "/ui/watch/preferences?discogs=denied"
    unknown = await app.get(
        f"{BASE}/oauth/callback", params={"oauth_token": "nope", "oauth_verifier": "x"}
    )
    assert unknown.status_code == 303
    assert query_of(unknown.headers["location"])["discogs"] == "failed"
    status = await app.get(f"{BASE}/status", headers=alice.headers)
    assert status.json()["connected"] is False


async def test_oauth_needs_the_consumer_configured(
    db_settings: dict[str, Any], discogs: FakeDiscogs
) -> None:
    settings = make_settings(**db_settings, **discogs_settings(discogs, discogs_consumer_key=None))
    async with running_app(settings) as http:
        alice = await new_user(http, "alice@example.com")
        refused = await http.post(f"{BASE}/oauth/start", headers=alice.headers)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "integration_unavailable"
        assert "DISCOGS_CONSUMER_KEY" in refused.json()["error"]["message"]
        status = await http.get(f"{BASE}/status", headers=alice.headers)
        assert status.json()["oauth_available"] is False


async def test_bad_input_gets_422_envelopes_and_importing_needs_a_link(
    app: httpx.AsyncClient,
) -> None:
    alice = await new_user(app, "alice@example.com")
    for path, body in [
        ("connect", {}),
        ("connect", {"external_user_id": "has space"}),
        ("connect", {"external_user_id": "a", "surprise": 1}),
        ("oauth/callback", {"state": "short", "code": "x"}),
        ("import", {"source": "everything"}),
    ]:
        response = await app.post(f"{BASE}/{path}", json=body, headers=alice.headers)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["status"] == 422
    refused = await app.post(f"{BASE}/import", json={"source": "wantlist"}, headers=alice.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "discogs_not_connected"
    assert (await app.get(f"{BASE}/status")).status_code == 401


# Importing ----------------------------------------------------------------------------


async def test_an_oauth_account_imports_its_wantlist_and_private_collection(
    worker_app: httpx.AsyncClient, discogs: FakeDiscogs
) -> None:
    http = worker_app
    wants = [release(1000 + n, f"Want {n}", f"Artist {n % 7}", 1970 + n % 50) for n in range(230)]
    collection = [
        release(1000, "Want 0", "Artist 0", 1970),
        release(5000, "Owned", "Band", 1999, 88),
    ]
    discogs.add("alice_dg", wants=wants, collection=collection)
    alice = await new_user(http, "alice@example.com")
    await oauth_connect(http, discogs, alice, "alice_dg")

    started = await http.post(f"{BASE}/import", json={"source": "both"}, headers=alice.headers)
    assert started.status_code == 202, started.text
    job = await finished(http, alice, started.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["processed_count"] == 232
    assert job["error_count"] == 0
    assert job["created_count"] == 231  # release 1000 is on both lists: one watch release
    assert job["imported_count"] == 232
    # Three wantlist pages of 100 and one collection page, every one signed as alice.
    calls = [(which, page, how) for user, which, page, how in discogs.list_calls]
    assert calls == [
        ("wants", 1, "oauth1"),
        ("wants", 2, "oauth1"),
        ("wants", 3, "oauth1"),
        ("collection", 1, "oauth1"),
    ]
    assert discogs.bad_signatures == 0

    watched = await releases_of(http, alice)
    assert len(watched) == 231
    owned = watched[5000]
    assert owned["title"] == "Owned"
    assert owned["artist"] == "Band"
    assert owned["discogs_master_id"] == 88
    assert owned["is_active"] is True
    assert owned["currency"] == "USD"

    items = await http.get(
        f"{BASE}/imported-items", params={"source": "collection"}, headers=alice.headers
    )
    assert {item["discogs_release_id"] for item in items.json()} == {1000, 5000}
    first = items.json()[0]
    assert first["discogs_url"] == f"{discogs.url}/release/{first['discogs_release_id']}"
    opened = await http.get(
        f"{BASE}/imported-items/{owned['id']}/open-in-discogs", headers=alice.headers
    )
    assert opened.json() == {
        "watch_release_id": owned["id"],
        "discogs_release_id": 5000,
        "url": f"{discogs.url}/release/5000",
    }
    redirect = await http.get(
        f"{BASE}/imported-items/{owned['id']}/open-in-discogs",
        params={"redirect": "true"},
        headers=alice.headers,
    )
    assert redirect.status_code == 307
    assert redirect.headers["location"] == f"{discogs.url}/release/5000"

    # The calls are alice's own provider requests (seed 003's provider-requests).
    own = await http.get(
        f"{V1}/provider-requests", params={"provider": "discogs"}, headers=alice.headers
    )
    assert own.status_code == 200
    paths = [row["endpoint"] for row in own.json()["items"]]
    assert any("/users/alice_dg/wants" in path for path in paths), own.json()
    status = (await http.get(f"{BASE}/status", headers=alice.headers)).json()
    assert status["last_import_at"] is not None
    assert status["last_error"] is None


async def test_reimport_follows_the_lists_and_keeps_the_users_deletions(
    worker_app: httpx.AsyncClient, discogs: FakeDiscogs
) -> None:
    http = worker_app
    account = discogs.add(
        "alice_dg",
        wants=[release(1, "One"), release(2, "Two"), release(3, "Three"), release(4, "Four")],
        personal_token="alice-personal",
    )
    alice = await new_user(http, "alice@example.com")
    await http.post(
        f"{BASE}/connect",
        json={"external_user_id": "alice_dg", "access_token": "alice-personal"},
        headers=alice.headers,
    )

    async def run(source: str = "wantlist") -> dict[str, Any]:
        started = await http.post(f"{BASE}/import", json={"source": source}, headers=alice.headers)
        assert started.status_code == 202, started.text
        return await finished(http, alice, started.json()["id"])

    first = await run()
    assert first["created_count"] == 4
    assert {how for *_, how in discogs.list_calls} == {"personal"}
    watched = await releases_of(http, alice)
    # The user tunes one watch release and hard-deletes another.
    tuned = await http.patch(
        f"{V1}/watch-releases/{watched[1]['id']}",
        json={"target_price": 25, "min_condition": "VG+"},
        headers=alice.headers,
    )
    assert tuned.status_code == 200, tuned.text
    deleted = await http.delete(
        f"{V1}/watch-releases/{watched[4]['id']}/hard", headers=alice.headers
    )
    assert deleted.status_code == 204, deleted.text

    # On Discogs: "Two" leaves the wantlist, "One" is renamed, "Five" is added.
    account.wants = [
        release(1, "One (Remastered)"),
        release(3, "Three"),
        release(4, "Four"),
        release(5, "Five"),
    ]
    second = await run()
    assert second["status"] == "succeeded", second
    assert (second["created_count"], second["updated_count"], second["removed_count"]) == (1, 1, 1)
    watched = await releases_of(http, alice)
    assert sorted(watched) == [1, 2, 3, 5]  # 4 stays deleted
    assert watched[1]["title"] == "One (Remastered)"
    assert watched[1]["target_price"] == 25
    assert watched[1]["min_condition"] == "VG+"
    assert watched[2]["is_active"] is False  # paused: it left the wantlist
    events = (await http.get(f"{V1}/events", params={"limit": 200}, headers=alice.headers)).json()
    paused = [
        e for e in events if e["type"] == "RULE_DISABLED" and e["rule_id"] == watched[2]["id"]
    ]
    assert paused
    assert paused[0]["payload"]["reason"] == "removed from the Discogs wantlist"
    removed = await http.get(
        f"{BASE}/imported-items", params={"include_removed": "true"}, headers=alice.headers
    )
    by_id = {item["discogs_release_id"]: item for item in removed.json()}
    assert by_id[2]["removed_at"] is not None
    assert by_id[4]["watch_release_id"] is None

    # "Two" comes back: its watch release is enabled again.
    account.wants.append(release(2, "Two"))
    third = await run()
    assert third["removed_count"] == 0
    assert (await releases_of(http, alice))[2]["is_active"] is True


async def test_an_import_resumes_from_its_last_page_after_a_failure(
    app: httpx.AsyncClient, discogs: FakeDiscogs, database: Database, settings_for: Settings
) -> None:
    discogs.add("alice_dg", wants=[release(n, f"R{n}") for n in range(1, 251)])
    alice = await new_user(app, "alice@example.com")
    await app.post(f"{BASE}/connect", json={"external_user_id": "alice_dg"}, headers=alice.headers)
    started = await app.post(f"{BASE}/import", json={"source": "wantlist"}, headers=alice.headers)
    job_id = started.json()["id"]
    async with database.session(write=False) as session:
        queued = await session.get(Job, started.json()["job_id"])
        assert queued is not None
        assert queued.kind == integrations.IMPORT_KIND
    again = await app.post(f"{BASE}/import", json={"source": "collection"}, headers=alice.headers)
    assert again.status_code == 200
    assert again.json()["id"] == job_id

    catalog = CatalogContext(settings_for, database)
    importer = integrations.Importer(catalog)
    discogs.broken_pages[("wants", 2)] = 503
    try:
        with pytest.raises(ProviderUnavailable):
            await importer.run(job_id, last_attempt=False)
        midway = (await app.get(f"{BASE}/import/{job_id}", headers=alice.headers)).json()
        assert (midway["status"], midway["stage"], midway["page"]) == ("running", "wantlist", 1)
        assert midway["created_count"] == 100
        assert midway["message"].startswith("retrying")
        assert await importer.run(job_id, last_attempt=False) == {"status": "succeeded"}
    finally:
        await catalog.close()
    pages = [page for _, which, page, how in discogs.list_calls]
    assert pages == [1, 2, 2, 3]  # page 1 was not read again
    assert {how for *_, how in discogs.list_calls} == {"service"}  # a name-only link
    done = (await app.get(f"{BASE}/import/{job_id}", headers=alice.headers)).json()
    assert done["created_count"] == 250
    assert done["status"] == "succeeded"
    assert len(await releases_of(app, alice)) == 250


async def test_a_refused_list_fails_the_import_with_a_reason(
    worker_app: httpx.AsyncClient, discogs: FakeDiscogs
) -> None:
    discogs.add("alice_dg", collection=[release(1, "Mine")])
    alice = await new_user(worker_app, "alice@example.com")
    await worker_app.post(
        f"{BASE}/connect", json={"external_user_id": "alice_dg"}, headers=alice.headers
    )
    started = await worker_app.post(
        f"{BASE}/import", json={"source": "collection"}, headers=alice.headers
    )
    job = await finished(worker_app, alice, started.json()["id"])
    assert job["status"] == "failed"
    assert "403" in job["message"]
    status = (await worker_app.get(f"{BASE}/status", headers=alice.headers)).json()
    assert "403" in status["last_error"]
    assert status["last_import_at"] is None


async def test_isolation_disconnect_and_the_sync_schedule(
    app: httpx.AsyncClient, discogs: FakeDiscogs, database: Database, settings_for: Settings
) -> None:
    alice = await new_user(app, "alice@example.com")
    bob = await new_user(app, "bob@example.com")
    await oauth_connect(app, discogs, alice, "alice_dg")
    job = (await app.post(f"{BASE}/import", headers=alice.headers)).json()
    assert job["source"] == "both"
    assert job["trigger"] == "api"

    assert (await app.get(f"{BASE}/import/{job['id']}", headers=bob.headers)).status_code == 404
    assert (await app.get(f"{BASE}/imports", headers=bob.headers)).json() == []
    assert (await app.get(f"{BASE}/status", headers=bob.headers)).json()["connected"] is False
    admin_view = await app.get(f"{BASE}/status", params={"user_id": alice.id}, headers=ADMIN)
    assert admin_view.json()["external_user_id"] == "alice_dg"

    gone = await app.post(f"{BASE}/disconnect", json={"revoke": True}, headers=alice.headers)
    assert gone.status_code == 200
    assert gone.json()["disconnected"] is True
    assert gone.json()["tokens_deleted"] is True
    assert gone.json()["revoke_url"] == f"{discogs.url}/settings/applications"
    assert (await app.get(f"{BASE}/import/{job['id']}", headers=alice.headers)).json()[
        "status"
    ] == "failed"
    async with database.session(write=False) as session:
        assert await session.scalar(select(WatchAccountLink)) is None

    # Connected accounts are imported again by the schedule, 25 at a time.
    await app.post(f"{BASE}/connect", json={"external_user_id": "bob_dg"}, headers=bob.headers)
    interval = timedelta(seconds=settings_for.discogs_sync_interval_seconds)
    assert await integrations.sync_due(database, "catalog", interval) == 1
    assert await integrations.sync_due(database, "catalog", interval) == 0  # one in flight
    async with database.session(write=False) as session:
        scheduled = await session.scalar(
            select(WatchImportJob).where(WatchImportJob.user_id == bob.id)
        )
        assert scheduled is not None
        assert scheduled.trigger == "schedule"


# The preferences page ---------------------------------------------------------------------


async def test_the_preferences_page_connects_imports_and_disconnects(
    worker_app: httpx.AsyncClient, discogs: FakeDiscogs
) -> None:
    http = worker_app
    discogs.add("alice_dg", wants=[release(7, "Seven")], collection=[release(8, "Eight")])
    alice = await new_user(http, "alice@example.com")
    assert (await user_login(http, alice.email)).status_code == 303
    page = await http.get("/ui/watch/preferences")
    assert 'id="discogs-oauth"' in page.text
    assert "Link your Discogs account" in page.text

    # Connect with Discogs: off to its authorise page, back through the API's callback.
    token = await token_of(http, "/ui/watch/preferences")
    off = await http.post("/ui/watch/discogs/oauth", data={"csrf_token": token})
    assert off.status_code == 303
    assert off.headers["location"].startswith(f"{discogs.url}/oauth/authorize?oauth_token=")
    discogs.approve_as = "alice_dg"
    async with httpx.AsyncClient() as browser:
        approved = await browser.get(off.headers["location"])
    landed = await http.get(approved.headers["location"].removeprefix("http://testserver"))
    page = await http.get(landed.headers["location"])
    assert "Your Discogs account is connected." in page.text
    assert "Connected as <strong>alice_dg</strong>" in page.text
    assert "authorised through Discogs" in page.text

    token = await token_of(http, "/ui/watch/preferences")
    started = await http.post(
        "/ui/watch/discogs/import", data={"csrf_token": token, "source": "both"}
    )
    assert started.headers["location"].endswith("discogs=import-started")
    job_id = (await http.get(f"{BASE}/imports", headers=alice.headers)).json()[0]["id"]
    assert (await finished(http, alice, job_id))["created_count"] == 2
    page = await http.get("/ui/watch/preferences")
    assert 'data-testid="discogs-imports"' in page.text
    assert "succeeded" in page.text

    token = await token_of(http, "/ui/watch/preferences")
    refused = await http.post(
        "/ui/watch/discogs/import", data={"csrf_token": "forged", "source": "both"}
    )
    assert refused.status_code == 403
    gone = await http.post("/ui/watch/discogs/disconnect", data={"csrf_token": token})
    assert gone.headers["location"].endswith("discogs=disconnected")
    status = (await http.get(f"{BASE}/status", headers=alice.headers)).json()
    assert status["connected"] is False
    assert len(await releases_of(http, alice)) == 2  # the watch releases stay

    token = await token_of(http, "/ui/watch/preferences")
    linked = await http.post(
        "/ui/watch/discogs/connect",
        data={"csrf_token": token, "username": "alice_dg", "token": "pt-1"},
    )
    assert linked.headers["location"].endswith("discogs=linked")
    status = (await http.get(f"{BASE}/status", headers=alice.headers)).json()
    assert status["auth"] == "personal"
    bad = await http.post(
        "/ui/watch/discogs/connect",
        data={"csrf_token": token, "username": "two words"},
    )
    page = await http.get(bad.headers["location"])
    assert "Discogs could not be connected: a Discogs username has no spaces" in page.text
