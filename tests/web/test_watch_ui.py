"""The watch pages over HTTP: user login, the user role's limits, rule forms, preferences,
events and the feed, the admin's read-only view."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from dispatch.config import Settings
from dispatch.db.engine import Database
from dispatch.watch.evaluate import Evaluator
from tests.support import ADMIN_PASSWORD, make_settings, running_app
from tests.watch.conftest import ADMIN, V1, WatchUser, new_user
from tests.watch.test_evaluate import product, write
from tests.web.test_gateway_task_pages import client_login
from tests.web.test_ui import csrf_from, login

PASSWORD = "a long password"
RULE_FORM: dict[str, Any] = {
    "name": "Dunks under 150",
    "sources": ["goat"],
    "is_active": "on",
    "poll_interval_seconds": "600",
    "keywords": "dunk, low",
    "q": "",
    "exclude_keywords": "kids",
    "brands": "Nike",
    "sizes": "10",
    "min_price": "",
    "max_price": "150",
    "currency": "usd",
    "new_match": "on",
    "price_drop": "on",
    "back_in_stock": "on",
    "drop_amount": "",
    "drop_percent": "5",
    "lowest_in_days": "",
}
RULE_ID = re.compile(r"/ui/watch/rules/(\d+)\?saved=1")


async def user_login(
    http: httpx.AsyncClient, email: str, password: str = PASSWORD, next_page: str = ""
) -> httpx.Response:
    form = await http.get("/ui/login?tab=user")
    assert form.status_code == 200
    data = {"email": email, "password": password, "csrf_token": csrf_from(form.text)}
    return await http.post("/ui/login/user", data=data | {"next": next_page})


async def token_of(http: httpx.AsyncClient, path: str = "/ui/watch") -> str:
    return csrf_from((await http.get(path)).text)


async def create_rule(http: httpx.AsyncClient, **changes: Any) -> int:
    data = RULE_FORM | changes | {"csrf_token": await token_of(http)}
    response = await http.post("/ui/watch/rules", data=data)
    assert response.status_code == 303, response.text
    found = RULE_ID.match(response.headers["location"])
    assert found
    return int(found.group(1))


async def api_rule(http: httpx.AsyncClient, user: WatchUser, rule_id: int) -> dict[str, Any]:
    response = await http.get(f"{V1}/watch-rules/{rule_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    rule: dict[str, Any] = response.json()
    return rule


def errors_of(page: str) -> list[str]:
    box = re.search(r'data-testid="form-errors">(.*?)</section>', page, re.S)
    assert box, "the page shows no form errors"
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", box.group(1))]


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as client:
        yield client


@pytest.fixture
async def alice(http: httpx.AsyncClient) -> WatchUser:
    return await new_user(http, "alice@example.com", PASSWORD, display_name="Alice")


@pytest.fixture
async def bob(http: httpx.AsyncClient) -> WatchUser:
    return await new_user(http, "bob@example.com", PASSWORD)


# Login, roles, logout ----------------------------------------------------------------------


async def test_a_user_logs_in_with_email_and_password(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    response = await user_login(http, " Alice@Example.com ")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/watch"
    cookie = response.headers["set-cookie"]
    assert "dispatch_session=" in cookie
    assert "HttpOnly" in cookie
    assert PASSWORD.split()[-1] not in cookie
    dashboard = await http.get("/ui/watch")
    assert dashboard.status_code == 200
    assert "Your watch" in dashboard.text
    assert 'data-testid="nav-watch"' in dashboard.text
    assert "Watch · Alice" in dashboard.text
    assert 'href="/ui/keys"' not in dashboard.text  # no admin links
    assert 'data-testid="nav-gateway"' not in dashboard.text


async def test_a_user_goes_back_to_the_watch_page_they_asked_for(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    asked = await http.get("/ui/watch/preferences")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/ui/login?next=/ui/watch/preferences&tab=user"
    landed = await user_login(http, alice.email, next_page="/ui/watch/preferences")
    assert landed.headers["location"] == "/ui/watch/preferences"
    await http.post("/ui/logout", data={"csrf_token": await token_of(http)})
    elsewhere = await user_login(http, alice.email, next_page="/ui/keys")
    assert elsewhere.headers["location"] == "/ui/watch"


async def test_wrong_unknown_and_inactive_logins_are_refused(
    http: httpx.AsyncClient, alice: WatchUser, bob: WatchUser
) -> None:
    wrong = await user_login(http, alice.email, "not the password")
    assert wrong.status_code == 401
    assert "Wrong email or password." in wrong.text
    unknown = await user_login(http, "nobody@example.com")
    assert unknown.status_code == 401
    assert "Wrong email or password." in unknown.text
    await http.patch(f"{V1}/users/{bob.id}", json={"is_active": False}, headers=ADMIN)
    inactive = await user_login(http, bob.email)
    assert inactive.status_code == 403
    assert "This account is inactive." in inactive.text
    assert (await http.get("/ui/watch")).status_code == 303  # no session was opened


async def test_user_login_needs_the_login_csrf_pair(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    data = {"email": alice.email, "password": PASSWORD, "csrf_token": "forged"}
    response = await http.post("/ui/login/user", data=data)
    assert response.status_code == 403
    assert "CSRF" in response.text
    assert (await http.get("/ui/watch")).status_code == 303


async def test_user_login_failures_share_the_login_rate_limit(
    db_settings: dict[str, Any],
) -> None:
    async with running_app(make_settings(**db_settings, login_rate_per_minute=3)) as http:
        await new_user(http, "alice@example.com", PASSWORD)
        statuses = [(await user_login(http, "alice@example.com", "wrong")).status_code]
        statuses += [(await user_login(http, "alice@example.com", "wrong")).status_code]
        statuses += [(await user_login(http, "alice@example.com")).status_code]
        refused = await user_login(http, "alice@example.com")
        assert statuses == [401, 401, 303]
        assert refused.status_code == 429
        assert "retry-after" in refused.headers


async def test_a_user_is_refused_outside_the_watch_pages(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    await user_login(http, alice.email)
    for path in ("/ui/", "/ui/keys", "/ui/jobs", "/ui/gateway", "/ui/gateway/tasks"):
        refused = await http.get(path)
        assert refused.status_code == 403, path
        assert "you are signed in as a watch user" in refused.text
    for path in ("/ui/catalog/products", "/ui/watch/users", "/documentation"):
        assert (await http.get(path)).status_code == 403, path
    assert (await http.get("/openapi-user.json")).status_code == 403
    data = {"name": "x", "scopes": "admin", "csrf_token": await token_of(http)}
    assert (await http.post("/ui/keys", data=data)).status_code == 403


async def test_a_gateway_client_or_nobody_cannot_use_the_watch_pages(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.get("/ui/watch/stream")).status_code == 303
    created = await http.post(f"{V1}/gateway/clients", json={"name": "shop"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    assert (await client_login(http, created.json()["token"])).status_code == 303
    for path in ("/ui/watch", "/ui/watch/rules", "/ui/watch/stream", "/ui/watch/events"):
        refused = await http.get(path)
        assert refused.status_code == 403, path
        assert "you are signed in as a gateway client" in refused.text


async def test_logout_ends_the_user_session(http: httpx.AsyncClient, alice: WatchUser) -> None:
    await user_login(http, alice.email)
    cookie = http.cookies.get("dispatch_session")
    assert cookie
    response = await http.post("/ui/logout", data={"csrf_token": await token_of(http)})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?tab=user"
    http.cookies.set("dispatch_session", cookie)
    assert (await http.get("/ui/watch")).status_code == 303


async def test_logging_out_everywhere_or_deactivation_ends_ui_sessions(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    await user_login(http, alice.email)
    assert (await http.get("/ui/watch")).status_code == 200
    assert (await http.post(f"{V1}/me/logout", headers=alice.headers)).status_code == 200
    assert (await http.get("/ui/watch")).status_code == 303
    await user_login(http, alice.email)  # a session opened after the logout lives
    assert (await http.get("/ui/watch")).status_code == 200
    assert (await http.delete(f"{V1}/me", headers=alice.headers)).status_code == 200
    assert (await http.get("/ui/watch")).status_code == 303


# Rules -------------------------------------------------------------------------------------


async def test_create_edit_disable_enable_and_delete_a_rule_through_the_forms(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    await user_login(http, alice.email)
    new = await http.get("/ui/watch/rules/new")
    assert new.status_code == 200
    assert 'name="sources" value="goat"' in new.text
    assert 'name="new_match" checked' in new.text

    rule_id = await create_rule(http)
    stored = await api_rule(http, alice, rule_id)
    assert stored["name"] == "Dunks under 150"
    assert stored["is_active"] is True
    assert stored["query"] == {
        "sources": ["goat"],
        "keywords": ["dunk", "low"],
        "exclude_keywords": ["kids"],
        "brands": ["nike"],
        "sizes": ["10"],
        "max_price": 150.0,
        "currency": "USD",
    }
    assert stored["notify_on"]["drop_percent"] == 5.0
    assert stored["notify_on"]["price_rise"] is False
    shown = await http.get(f"/ui/watch/rules/{rule_id}?saved=1")
    assert 'data-testid="saved"' in shown.text
    assert 'name="keywords" value="dunk, low"' in shown.text
    assert 'name="max_price" value="150"' in shown.text

    edit = RULE_FORM | {
        "name": "Dunks, any price",
        "keywords": "dunk",
        "max_price": "",
        "brands": "",
        "price_rise": "on",
        "poll_interval_seconds": "120",
        "csrf_token": await token_of(http),
    }
    saved = await http.post(f"/ui/watch/rules/{rule_id}", data=edit)
    assert saved.status_code == 303, saved.text
    stored = await api_rule(http, alice, rule_id)
    assert stored["name"] == "Dunks, any price"
    assert stored["query"]["keywords"] == ["dunk"]
    assert "max_price" not in stored["query"]
    assert "brands" not in stored["query"]
    assert stored["poll_interval_seconds"] == 120
    assert stored["notify_on"]["price_rise"] is True

    token = await token_of(http)
    off = await http.post(f"/ui/watch/rules/{rule_id}/disable", data={"csrf_token": token})
    assert off.status_code == 303
    assert off.headers["location"] == f"/ui/watch/rules/{rule_id}"
    assert (await api_rule(http, alice, rule_id))["is_active"] is False
    listed = await http.get("/ui/watch/rules")
    assert "disabled" in listed.text
    back = {"csrf_token": token, "back": "list"}
    on = await http.post(f"/ui/watch/rules/{rule_id}/enable", data=back)
    assert on.headers["location"] == "/ui/watch/rules"
    assert (await api_rule(http, alice, rule_id))["is_active"] is True

    gone = await http.post(f"/ui/watch/rules/{rule_id}/delete", data={"csrf_token": token})
    assert gone.status_code == 303
    assert (await http.get(f"{V1}/watch-rules/{rule_id}", headers=alice.headers)).status_code == 404
    kinds = await http.get(f"{V1}/events", params={"rule_id": rule_id}, headers=alice.headers)
    assert [e["type"] for e in kinds.json()][:1] == ["RULE_DELETED"]


async def test_conditions_set_through_the_api_survive_an_edit(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    body = {"name": "used", "query": {"sources": ["goat"], "conditions": ["used"]}}
    created = await http.post(f"{V1}/watch-rules", json=body, headers=alice.headers)
    rule_id = created.json()["id"]
    await user_login(http, alice.email)
    data = RULE_FORM | {"csrf_token": await token_of(http)}
    assert (await http.post(f"/ui/watch/rules/{rule_id}", data=data)).status_code == 303
    assert (await api_rule(http, alice, rule_id))["query"]["conditions"] == ["used"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sources": []}, "Query Sources: List should have at least 1 item"),
        ({"sources": ["nope"]}, "Unknown or disabled source: nope"),
        ({"min_price": "200"}, "Query: max_price must be greater than or equal to min_price"),
        ({"max_price": "cheap"}, "Query Max price: Input should be a valid decimal"),
        ({"name": ""}, "Name: String should have at least 1 character"),
        ({"poll_interval_seconds": "5"}, "Poll interval seconds: Input should be greater"),
        ({"drop_percent": "100"}, "Notify on Drop percent: Input should be less than 100"),
        ({"currency": "dollars"}, "Query Currency: String should match pattern"),
    ],
)
async def test_refused_rules_come_back_with_the_reasons(
    http: httpx.AsyncClient, alice: WatchUser, changes: dict[str, Any], expected: str
) -> None:
    await user_login(http, alice.email)
    token = await token_of(http)
    refused = await http.post("/ui/watch/rules", data=RULE_FORM | changes | {"csrf_token": token})
    assert refused.status_code == 422
    assert any(error.startswith(expected) for error in errors_of(refused.text)), errors_of(
        refused.text
    )
    assert 'name="keywords" value="dunk, low"' in refused.text  # what was typed stays
    listed = await http.get(f"{V1}/watch-rules", headers=alice.headers)
    assert listed.json() == []

    rule_id = await create_rule(http)
    edited = await http.post(
        f"/ui/watch/rules/{rule_id}", data=RULE_FORM | changes | {"csrf_token": token}
    )
    assert edited.status_code == 422
    assert any(error.startswith(expected) for error in errors_of(edited.text))
    assert (await api_rule(http, alice, rule_id))["name"] == RULE_FORM["name"]


async def test_state_changes_need_the_session_csrf_token(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    await user_login(http, alice.email)
    rule_id = await create_rule(http)
    for path, data in (
        ("/ui/watch/rules", RULE_FORM),
        (f"/ui/watch/rules/{rule_id}", RULE_FORM),
        (f"/ui/watch/rules/{rule_id}/disable", {}),
        (f"/ui/watch/rules/{rule_id}/delete", {}),
        ("/ui/watch/notifications/read-all", {}),
        ("/ui/watch/preferences", {"timezone": "UTC", "currency": "EUR"}),
        ("/ui/logout", {}),
    ):
        forged = await http.post(path, data=data | {"csrf_token": "forged"})
        assert forged.status_code == 403, path
        assert 'data-code="csrf_failed"' in forged.text
    stored = await api_rule(http, alice, rule_id)
    assert stored["is_active"] is True
    assert len((await http.get(f"{V1}/watch-rules", headers=alice.headers)).json()) == 1


async def test_a_user_cannot_see_or_touch_another_users_rule(
    http: httpx.AsyncClient, alice: WatchUser, bob: WatchUser
) -> None:
    body = {"name": "bob's secret", "query": {"sources": ["goat"]}}
    bobs = (await http.post(f"{V1}/watch-rules", json=body, headers=bob.headers)).json()["id"]
    await user_login(http, alice.email)
    assert (await http.get(f"/ui/watch/rules/{bobs}")).status_code == 404
    token = await token_of(http)
    for action in ("", "/disable", "/enable", "/delete"):
        data = (RULE_FORM if not action else {}) | {"csrf_token": token}
        response = await http.post(f"/ui/watch/rules/{bobs}{action}", data=data)
        assert response.status_code == 404, action
    for path in ("/ui/watch", "/ui/watch/rules", "/ui/watch/events?changes=true"):
        assert "bob&#39;s secret" not in (await http.get(path)).text, path
    assert (await http.get(f"/ui/watch/rules?user={bob.id}")).text.count("data-rule=") == 0
    assert (await api_rule(http, bob, bobs))["is_active"] is True


async def test_what_users_type_is_escaped(http: httpx.AsyncClient, alice: WatchUser) -> None:
    await user_login(http, alice.email)
    rule_id = await create_rule(http, name="<script>alert(1)</script>")
    page = await http.get(f"/ui/watch/rules/{rule_id}")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


# Events, notifications, preferences --------------------------------------------------------


async def test_matches_events_and_the_feed(
    http: httpx.AsyncClient, settings: Settings, alice: WatchUser, bob: WatchUser
) -> None:
    await user_login(http, alice.email)
    rule_id = await create_rule(http)
    database = Database(settings)
    try:
        await write(database, product("panda", "Nike Dunk Low Panda", brand="Nike"))
        await write(database, product("air", "Nike Air Max", brand="Nike"))
        assert (await Evaluator(database, settings).run_once()).events == 1
    finally:
        await database.dispose()

    dashboard = await http.get("/ui/watch")
    assert 'data-testid="unread-count" title="unread">1<' in dashboard.text
    assert "New match: Nike Dunk Low Panda, 120.00 USD" in dashboard.text
    assert 'href="https://example.com/panda"' in dashboard.text
    why = 'matched: source goat; keyword "dunk"; keyword "low"; brand nike; size 10; price <= 150'
    assert why in html.unescape(dashboard.text)
    assert "Nike Air Max" not in dashboard.text
    found = re.search(r'data-notification="(\d+)"', dashboard.text)
    assert found
    item = await http.get(f"/ui/watch/notifications/{found.group(1)}")
    assert item.status_code == 200
    assert item.text.strip().startswith("<li")
    assert "<html" not in item.text

    rule_page = await http.get(f"/ui/watch/rules/{rule_id}")
    assert 'data-testid="match-count">1<' in (await http.get("/ui/watch/rules")).text
    assert "Nike Dunk Low Panda" in rule_page.text
    assert "RULE CREATED" in rule_page.text.upper()
    events = await http.get("/ui/watch/events")
    assert "Nike Dunk Low Panda" in events.text
    assert "Rule created" not in events.text
    assert "Rule created" in (await http.get("/ui/watch/events?changes=true")).text

    token = await token_of(http)
    marked = await http.post(
        "/ui/watch/notifications/read-all", data={"csrf_token": token, "back": "notifications"}
    )
    assert marked.headers["location"] == "/ui/watch/notifications"
    feed = await http.get("/ui/watch/notifications")
    assert 'data-testid="unread-count" title="unread">0<' in feed.text
    assert "watch-read" in feed.text
    unread = await http.get(f"{V1}/notifications/unread-count", headers=alice.headers)
    assert unread.json() == {"unread_count": 0}

    await http.post("/ui/logout", data={"csrf_token": token})
    await user_login(http, bob.email)
    assert (await http.get(f"/ui/watch/notifications/{found.group(1)}")).status_code == 404
    assert "Nike Dunk Low Panda" not in (await http.get("/ui/watch")).text


async def test_older_events_are_a_page_away(http: httpx.AsyncClient, alice: WatchUser) -> None:
    await user_login(http, alice.email)
    rule_id = await create_rule(http)
    token = await token_of(http)
    for _ in range(30):  # three events: RULE_DISABLED, then RULE_UPDATED and RULE_ENABLED
        await http.post(f"/ui/watch/rules/{rule_id}/disable", data={"csrf_token": token})
        await http.post(f"/ui/watch/rules/{rule_id}/enable", data={"csrf_token": token})
    first = await http.get("/ui/watch/events?changes=true")
    assert first.text.count("data-event=") == 50
    older = re.search(r'href="([^"]+)" id="next-page"', first.text)
    assert older
    second = await http.get(html.unescape(older.group(1)))
    assert second.status_code == 200
    assert second.text.count("data-event=") == 41  # with RULE_CREATED, 91 in all
    assert 'id="next-page"' not in second.text
    assert (await http.get("/ui/watch/events?cursor=garbage")).status_code == 422


async def test_preferences_are_saved_and_refusals_shown(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    await user_login(http, alice.email)
    page = await http.get("/ui/watch/preferences")
    assert page.status_code == 200
    assert 'value="alice@example.com" disabled' in page.text
    assert "No webhook URL yet" in page.text
    data = {
        "display_name": "Alice B.",
        "timezone": "Europe/Paris",
        "currency": "eur",
        "notifications_email": "on",
        "notifications_webhook": "on",
        "delivery_frequency": "daily",
        "quiet_hours_start": "22",
        "quiet_hours_end": "7",
        "notification_timezone": "",
        "webhook_urls": "https://hooks.example.com/a?x=1,2\n\nhttps://hooks.example.com/b\n",
        "csrf_token": await token_of(http, "/ui/watch/preferences"),
    }
    saved = await http.post("/ui/watch/preferences", data=data)
    assert saved.status_code == 303, saved.text
    me = (await http.get(f"{V1}/me", headers=alice.headers)).json()
    assert me["display_name"] == "Alice B."
    preferences = me["preferences"]
    assert preferences["timezone"] == "Europe/Paris"
    assert preferences["currency"] == "EUR"
    assert preferences["notifications_push"] is False
    assert preferences["notifications_webhook"] is True
    assert (preferences["quiet_hours_start"], preferences["quiet_hours_end"]) == (22, 7)
    assert preferences["delivery_frequency"] == "daily"
    assert preferences["webhook_urls"] == [
        "https://hooks.example.com/a?x=1,2",
        "https://hooks.example.com/b",
    ]
    shown = await http.get("/ui/watch/preferences?saved=1")
    secret = (await http.get(f"{V1}/me/webhook", headers=alice.headers)).json()["signing_secret"]
    assert secret.startswith("whsec_")
    assert secret in shown.text
    assert "Watch · Alice B." in shown.text

    refused = await http.post(
        "/ui/watch/preferences",
        data=data | {"timezone": "Mars/Olympus", "webhook_urls": "ftp://x"},
    )
    assert refused.status_code == 422
    errors = errors_of(refused.text)
    assert any("unknown time zone 'Mars/Olympus'" in error for error in errors), errors
    assert any("is not an http or https URL" in error for error in errors)
    assert 'value="Mars/Olympus"' in refused.text
    half = await http.post("/ui/watch/preferences", data=data | {"quiet_hours_end": ""})
    assert half.status_code == 422
    assert errors_of(half.text) == ["quiet_hours_start and quiet_hours_end are set together"]
    me = (await http.get(f"{V1}/me", headers=alice.headers)).json()
    assert me["preferences"]["timezone"] == "Europe/Paris"


# Admins ------------------------------------------------------------------------------------


async def test_an_admin_reads_every_users_watch_data(
    http: httpx.AsyncClient, alice: WatchUser, bob: WatchUser
) -> None:
    for user, name in ((alice, "alice rule"), (bob, "bob rule")):
        body = {"name": name, "query": {"sources": ["goat"]}}
        assert (await http.post(f"{V1}/watch-rules", json=body, headers=user.headers)).is_success
    assert (await login(http, ADMIN_PASSWORD)).status_code == 303
    home = await http.get("/ui/")
    assert 'data-testid="nav-watch"' in home.text
    dashboard = await http.get("/ui/watch")
    assert dashboard.status_code == 200
    assert "alice rule" in dashboard.text
    assert "bob rule" in dashboard.text
    assert "bob@example.com" in dashboard.text
    assert 'data-testid="disable"' not in dashboard.text  # read-only
    only_bob = await http.get(f"/ui/watch/rules?user={bob.id}")
    assert "bob rule" in only_bob.text
    assert "alice rule" not in only_bob.text
    people = await http.get("/ui/watch/users")
    assert people.status_code == 200
    assert people.text.count("data-user=") == 2
    token = await token_of(http, "/ui/")
    refused = await http.post("/ui/watch/rules", data=RULE_FORM | {"csrf_token": token})
    assert refused.status_code == 403
    assert (await http.get("/ui/watch/preferences")).status_code == 403
    assert (await http.get("/ui/watch/rules/new")).status_code == 403
