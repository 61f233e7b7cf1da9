"""Admin UI pages that configure the gateway: resources, endpoints, rules, clients, settings."""

from __future__ import annotations

import re
import socket
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from dispatch.db.engine import Database
from dispatch.demo.serving import free_port
from dispatch.models import GatewayResource
from tests.support import ADMIN_PASSWORD, admin_headers, make_settings
from tests.web.test_ui import csrf_from, login

ADMIN = admin_headers()
V1 = "/api/v1/gateway"
UI = "/ui/gateway"
HTMX = {"HX-Request": "true"}
SECRET_HEADER = "Bearer s3cret-token-value-0123456789"


async def _admin(client: httpx.AsyncClient) -> str:
    """Log in; the session's CSRF token."""
    await login(client, ADMIN_PASSWORD)
    return csrf_from((await client.get(f"{UI}/resources")).text)


async def _api(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    response = await client.request(method, f"{V1}{path}", headers=ADMIN, **kwargs)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def _resource_form(csrf: str, name: str, **fields: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "csrf_token": csrf,
        "name": name,
        "url": f"https://{name}.example.com/hook",
        "method": "POST",
        "timeout_seconds": "5",
        "required_params": "to, text",
        "is_active": "on",
        "health_check_method": "simple",
        "health_check_interval_min": "60",
        "health_check_interval_max": "90",
        "healthy_threshold": "2",
        "unhealthy_threshold": "3",
    }
    return form | fields


def _endpoint_form(csrf: str, path: str, resource_ids: list[int], **fields: Any) -> dict[str, Any]:
    form = {"csrf_token": csrf, "path": path, "required_params": "ref, scope", "is_active": "on"}
    return form | {"resource_ids": [str(i) for i in resource_ids]} | fields


async def _stored_headers(db_settings: dict[str, Any], resource_id: int) -> dict[str, str]:
    database = Database(make_settings(**db_settings))
    try:
        async with database.session(write=False) as session:
            resource = await session.get(GatewayResource, resource_id)
            assert resource is not None
            return dict(resource.headers)
    finally:
        await database.dispose()


PAGES = [
    f"{UI}/resources",
    f"{UI}/resources/new",
    f"{UI}/endpoints",
    f"{UI}/endpoints/new",
    f"{UI}/clients",
    f"{UI}/clients/new",
    f"{UI}/settings",
]


async def test_pages_send_strangers_to_the_login_and_refuse_forged_posts(
    client: httpx.AsyncClient,
) -> None:
    for url in PAGES:
        response = await client.get(url)
        assert (response.status_code, response.headers["location"]) == (
            303,
            f"/ui/login?next={url}",
        )
    assert (await client.post(f"{UI}/resources", data={"name": "x"})).status_code == 303
    await _admin(client)
    resource = await _api(client, "POST", "/resources", json={"name": "a", "url": "https://a.io"})
    endpoint = await _api(client, "POST", "/endpoints", json={"path": "e"})
    made = await _api(client, "POST", "/clients", json={"name": "c"})
    for action in [
        f"{UI}/resources",
        f"{UI}/resources/{resource['id']}/edit",
        f"{UI}/resources/{resource['id']}/delete",
        f"{UI}/resources/{resource['id']}/check",
        f"{UI}/resources/{resource['id']}/rotate-secret",
        f"{UI}/endpoints",
        f"{UI}/endpoints/{endpoint['id']}/delete",
        f"{UI}/endpoints/{endpoint['id']}/rules",
        f"{UI}/endpoints/{endpoint['id']}/rules/test",
        f"{UI}/clients",
        f"{UI}/clients/{made['id']}/rotate-token",
        f"{UI}/settings",
        f"{UI}/settings/test-smtp",
    ]:
        forged = await client.post(action, data={"name": "forged"})
        assert forged.status_code == 403, action
        assert "CSRF" in forged.text
    assert len(await _api(client, "GET", "/resources")) == 1


async def test_every_page_renders_for_an_admin(client: httpx.AsyncClient) -> None:
    await _admin(client)
    resource = await _api(
        client, "POST", "/resources", json={"name": "sms", "url": "https://sms.example.com"}
    )
    endpoint = await _api(
        client, "POST", "/endpoints", json={"path": "alerts", "resource_ids": [resource["id"]]}
    )
    made = await _api(client, "POST", "/clients", json={"name": "acme"})
    pages = [
        *PAGES,
        f"{UI}/resources/{resource['id']}",
        f"{UI}/resources/{resource['id']}/edit",
        f"{UI}/endpoints/{endpoint['id']}/edit",
        f"{UI}/endpoints/{endpoint['id']}/rules",
        f"{UI}/clients/{made['id']}/edit",
    ]
    for url in pages:
        response = await client.get(url)
        assert response.status_code == 200, url
        assert "/static/gateway.css" in response.text
    listing = (await client.get(f"{UI}/resources")).text
    assert 'data-breaker="closed"' in listing
    assert "sms.example.com" in listing
    assert "/api/alerts" in (await client.get(f"{UI}/endpoints")).text
    assert made["token_prefix"] in (await client.get(f"{UI}/clients")).text
    assert (await client.get(f"{UI}/resources/999999")).status_code == 404
    assert (await client.get(f"{UI}/endpoints/999999/rules")).status_code == 404


async def test_create_and_edit_a_resource_keeps_masked_secrets(
    client: httpx.AsyncClient, db_settings: dict[str, Any]
) -> None:
    csrf = await _admin(client)
    form = _resource_form(
        csrf,
        "sms",
        headers_key=["Authorization", "X-Team"],
        headers_value=[SECRET_HEADER, "ops"],
        health_check_enabled="on",
        health_check_method="actual",
        health_check_test_values='{"to": "0800", "text": "ping {resource_name}"}',
        send_failure_email="on",
        notification_email="ops@example.com",
        rate_limit_per_second="2.5",
    )
    created = await client.post(f"{UI}/resources", data=form)
    assert created.status_code == 201, created.text
    secret = re.search(r'data-testid="new-secret">(whsec_[^<]+)<', created.text)
    assert secret, "the signing secret is shown once"
    (stored,) = await _api(client, "GET", "/resources")
    assert stored["required_params"] == ["to", "text"]
    assert stored["health_check_test_values"] == {"to": "0800", "text": "ping {resource_name}"}
    assert (stored["rate_limit_per_second"], stored["notification_email"]) == (
        2.5,
        "ops@example.com",
    )
    assert stored["headers"]["X-Team"] == "ops"
    assert secret.group(1) not in (await client.get(f"{UI}/resources/{stored['id']}")).text

    edit = await client.get(f"{UI}/resources/{stored['id']}/edit")
    masked = stored["headers"]["Authorization"]
    assert masked in edit.text
    assert SECRET_HEADER not in edit.text
    form |= {"name": "sms-eu", "headers_value": [masked, "platform"], "timeout_seconds": "7"}
    form |= {"rate_limit_per_second": "", "notification_email": ""}
    saved = await client.post(f"{UI}/resources/{stored['id']}/edit", data=form)
    assert (saved.status_code, saved.headers["location"]) == (
        303,
        f"{UI}/resources/{stored['id']}",
    )
    after = await _api(client, "GET", f"/resources/{stored['id']}")
    assert (after["name"], after["timeout_seconds"]) == ("sms-eu", 7.0)
    assert (after["rate_limit_per_second"], after["notification_email"]) == (None, None)
    headers = await _stored_headers(db_settings, stored["id"])
    assert headers == {"Authorization": SECRET_HEADER, "X-Team": "platform"}


async def test_a_refused_resource_form_comes_back_with_the_reasons(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _admin(client)
    bad = _resource_form(
        csrf,
        "sms",
        url="ftp://nope",
        health_check_test_values="{not json",
        health_check_interval_min="100",
        health_check_interval_max="50",
    )
    refused = await client.post(f"{UI}/resources", data=bad)
    assert refused.status_code == 422
    assert "Health check test values: not valid JSON" in refused.text
    assert 'value="ftp://nope"' in refused.text  # what was typed is kept
    bad["health_check_test_values"] = ""
    refused = await client.post(f"{UI}/resources", data=bad)
    assert "Url: must be an http:// or https:// URL" in refused.text
    bad["url"] = "https://sms.example.com"
    refused = await client.post(f"{UI}/resources", data=bad)
    assert "must not exceed health_check_interval_max" in refused.text
    assert (
        await client.post(f"{UI}/resources", data=_resource_form(csrf, "sms"))
    ).status_code == 201
    twice = await client.post(f"{UI}/resources", data=_resource_form(csrf, "sms"))
    assert twice.status_code == 409
    assert "already exists" in twice.text
    assert [r["name"] for r in await _api(client, "GET", "/resources")] == ["sms"]


async def test_resource_actions_from_the_list(client: httpx.AsyncClient) -> None:
    csrf = await _admin(client)
    resource = await _api(
        client, "POST", "/resources", json={"name": "sms", "url": "http://127.0.0.1:9/"}
    )
    base = f"{UI}/resources/{resource['id']}"
    toggled = await client.post(f"{base}/toggle", data={"csrf_token": csrf})
    assert toggled.headers["location"] == f"{UI}/resources"
    assert (await _api(client, "GET", f"/resources/{resource['id']}"))["is_active"] is False

    copy = await client.post(f"{base}/duplicate", data={"csrf_token": csrf})
    assert copy.status_code == 201
    assert "whsec_" in copy.text
    names = {r["name"]: r for r in await _api(client, "GET", "/resources")}
    assert names["sms copy"]["is_active"] is False

    rotated = await client.post(f"{base}/rotate-secret", data={"csrf_token": csrf})
    assert rotated.status_code == 200
    assert "Signing secret rotated" in rotated.text
    assert "previous secret keeps signing" in rotated.text

    # Loopback is not an allowed network here, so the probe fails and says why.
    checked = await client.post(f"{base}/check", data={"csrf_token": csrf}, headers=HTMX)
    assert checked.status_code == 200
    assert 'data-testid="check-result">failed' in checked.text
    assert "refused" in checked.text
    plain = await client.post(f"{base}/check", data={"csrf_token": csrf})
    assert plain.headers["location"] == base
    detail = (await client.get(base)).text
    assert detail.count('class="gw-fail"') == 2  # two cells in the health strip
    assert "2 failed" in detail
    history = await _api(client, "GET", f"/resources/{resource['id']}/health")
    assert len(history) == 2

    deleted = await client.post(f"{base}/delete", data={"csrf_token": csrf})
    assert deleted.headers["location"] == f"{UI}/resources"
    missing = await client.get(f"{V1}/resources/{resource['id']}", headers=ADMIN)
    assert missing.status_code == 404


async def test_the_endpoint_form_stores_the_order_it_was_given(client: httpx.AsyncClient) -> None:
    csrf = await _admin(client)
    made = [
        await _api(client, "POST", "/resources", json={"name": n, "url": f"https://{n}.io"})
        for n in ("a", "b", "c")
    ]
    a, b, c = (r["id"] for r in made)
    acme = await _api(client, "POST", "/clients", json={"name": "acme"})
    form = _endpoint_form(csrf, "alerts", [c, a, b], client_ids=[str(acme["id"])], max_attempts="4")
    created = await client.post(f"{UI}/endpoints", data=form)
    assert (created.status_code, created.headers["location"]) == (303, f"{UI}/endpoints")
    (endpoint,) = await _api(client, "GET", "/endpoints")
    assert [r["id"] for r in endpoint["resources"]] == [c, a, b]
    assert (endpoint["client_ids"], endpoint["max_attempts"]) == ([acme["id"]], 4)

    edit = await client.get(f"{UI}/endpoints/{endpoint['id']}/edit")
    order = edit.text.split('data-testid="resource-order">')[1].split("</ol>")[0]
    assert [int(i) for i in re.findall(r'data-id="(\d+)"', order)] == [c, a, b]
    form = _endpoint_form(csrf, "alerts", [b, c], description="paging", is_development_mode="on")
    saved = await client.post(f"{UI}/endpoints/{endpoint['id']}/edit", data=form)
    assert saved.status_code == 303
    after = await _api(client, "GET", f"/endpoints/{endpoint['id']}")
    assert [r["id"] for r in after["resources"]] == [b, c]
    assert (after["client_ids"], after["max_attempts"]) == ([], None)
    assert (after["description"], after["is_development_mode"]) == ("paging", True)


async def test_a_refused_endpoint_form_says_why_and_keeps_nothing(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _admin(client)
    resource = await _api(client, "POST", "/resources", json={"name": "a", "url": "https://a.io"})
    reserved = await client.post(f"{UI}/endpoints", data=_endpoint_form(csrf, "v1/jobs", []))
    assert reserved.status_code == 422
    assert "service&#39;s own routes" in reserved.text
    assert (
        await client.post(f"{UI}/endpoints", data=_endpoint_form(csrf, "alerts", []))
    ).status_code == 303
    twice = await client.post(
        f"{UI}/endpoints", data=_endpoint_form(csrf, "alerts", [resource["id"]])
    )
    assert twice.status_code == 409
    assert "already exists" in twice.text
    unknown = await client.post(f"{UI}/endpoints", data=_endpoint_form(csrf, "other", [999]))
    assert unknown.status_code == 422
    assert "Unknown resource ids: 999" in unknown.text
    listed = await _api(client, "GET", "/endpoints")
    assert [(e["path"], e["resources"]) for e in listed] == [("alerts", [])]


async def test_endpoint_actions_from_the_list(client: httpx.AsyncClient) -> None:
    csrf = await _admin(client)
    endpoint = await _api(client, "POST", "/endpoints", json={"path": "alerts"})
    base = f"{UI}/endpoints/{endpoint['id']}"
    for action in ("toggle-active", "toggle-dev", "duplicate"):
        done = await client.post(f"{base}/{action}", data={"csrf_token": csrf})
        assert done.headers["location"] == f"{UI}/endpoints", action
    listed = {e["path"]: e for e in await _api(client, "GET", "/endpoints")}
    assert listed["alerts"]["is_active"] is False
    assert listed["alerts"]["is_development_mode"] is True
    assert "alerts-copy" in listed
    page = (await client.get(f"{UI}/endpoints")).text
    assert "Dev mode off" in page
    await client.post(f"{base}/delete", data={"csrf_token": csrf})
    assert [e["path"] for e in await _api(client, "GET", "/endpoints")] == ["alerts-copy"]


def _rules_form(csrf: str, a: int, b: int, **extra: Any) -> dict[str, Any]:
    return {
        "csrf_token": csrf,
        "map_resource_id": [str(a), str(a), str(b)],
        "map_target_key": ["phone", "", "body.text"],
        "map_source_type": ["from_source", "from_source", "template"],
        "map_source_value": ["to", "", "Hi {name}"],
        "dev_condition_param": ["to"],
        "dev_match": ["regex"],
        "dev_condition_value": ["^07"],
        "dev_target_param": ["to"],
        "dev_override_value": ['"0800000000"'],
        "dev_active": ["1"],
    } | extra


async def test_the_rules_editor_saves_all_and_tests_unsaved_rules(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _admin(client)
    a, b = [
        (await _api(client, "POST", "/resources", json={"name": n, "url": f"https://{n}.io"}))["id"]
        for n in ("sms", "mail")
    ]
    endpoint = await _api(
        client,
        "POST",
        "/endpoints",
        json={
            "path": "alerts",
            "resource_ids": [a, b],
            "is_development_mode": True,
            "dev_rules_enabled": True,
        },
    )
    base = f"{UI}/endpoints/{endpoint['id']}/rules"
    saved = await client.post(base, data=_rules_form(csrf, a, b))
    assert (saved.status_code, saved.headers["location"]) == (303, f"{base}?saved=1")
    rules = await _api(client, "GET", f"/endpoints/{endpoint['id']}/rules")
    assert [(r["resource_id"], r["target_key"]) for r in rules["mapping"]] == [
        (a, "phone"),
        (b, "body.text"),
    ]
    (dev,) = rules["dev_rules"]
    assert (dev["match"], dev["override_value"], dev["active"]) == ("regex", "0800000000", True)
    shown = (await client.get(f"{base}?saved=1")).text
    assert "Rules saved." in shown
    assert 'value="Hi {name}"' in shown

    sample = '{"ref": "r", "scope": "s", "to": "0712", "name": "Ann"}'
    unsaved = _rules_form(csrf, a, b, map_target_key=["mobile", "", "body.text"], sample=sample)
    tested = await client.post(f"{base}/test", data=unsaved, headers=HTMX)
    assert tested.status_code == 200, tested.text
    targets = re.findall(r'data-testid="mapping-target" data-resource="(\d+)">', tested.text)
    assert targets == [str(a), str(b)]
    assert "&#34;mobile&#34;: &#34;0800000000&#34;" in tested.text  # the dev override, unsaved key
    assert "Hi Ann" in tested.text
    stored = await _api(client, "GET", f"/endpoints/{endpoint['id']}/rules")
    assert stored == rules  # testing saves nothing


async def test_bad_rules_come_back_as_messages(client: httpx.AsyncClient) -> None:
    csrf = await _admin(client)
    a = (await _api(client, "POST", "/resources", json={"name": "sms", "url": "https://s.io"}))[
        "id"
    ]
    endpoint = await _api(
        client, "POST", "/endpoints", json={"path": "alerts", "resource_ids": [a]}
    )
    base = f"{UI}/endpoints/{endpoint['id']}/rules"
    await client.post(base, data=_rules_form(csrf, a, a))
    before = await _api(client, "GET", f"/endpoints/{endpoint['id']}/rules")

    bad = _rules_form(
        csrf,
        a,
        a,
        dev_condition_value=["(unclosed"],
        map_target_key=["ok", "", "bad..key"],
        dev_override_value=["not json"],
    )
    refused = await client.post(base, data=bad)
    assert refused.status_code == 422
    assert "Mapping rule 3: bad target_key" in refused.text
    assert "Dev rule 1: override value is not JSON" in refused.text
    assert 'value="(unclosed"' in refused.text
    bad["dev_override_value"] = ['"x"']
    regex = await client.post(base, data=bad)
    assert "Dev rule 1: bad regex" in regex.text
    bad["dev_condition_value"] = ["a" * 201]
    tested = await client.post(f"{base}/test", data=bad | {"sample": "{}"}, headers=HTMX)
    assert tested.status_code == 422
    assert "regex longer than 200 characters" in tested.text
    sample = await client.post(f"{base}/test", data={"csrf_token": csrf, "sample": "[1]"})
    assert "Sample payload: must be a JSON object" in sample.text
    assert await _api(client, "GET", f"/endpoints/{endpoint['id']}/rules") == before


async def test_clients_create_edit_rotate_and_delete(client: httpx.AsyncClient) -> None:
    csrf = await _admin(client)
    alerts = await _api(client, "POST", "/endpoints", json={"path": "alerts"})
    other = await _api(client, "POST", "/endpoints", json={"path": "other"})
    form = {
        "csrf_token": csrf,
        "name": "acme",
        "description": "billing team",
        "is_active": "on",
        "endpoint_ids": [str(alerts["id"])],
        "dev_rules_enabled": "on",
        "dev_endpoint_id": [str(other["id"])],
        "dev_condition_param": [""],
        "dev_match": ["contains"],
        "dev_condition_value": [""],
        "dev_target_param": ["to"],
        "dev_override_value": ["42"],
        "dev_active": ["1"],
    }
    created = await client.post(f"{UI}/clients", data=form)
    assert created.status_code == 201, created.text
    token = re.search(r'data-testid="new-secret">(dpy_[^<]+)<', created.text)
    assert token
    (stored,) = await _api(client, "GET", "/clients")
    assert stored["endpoint_ids"] == [alerts["id"]]
    assert [(r["endpoint_id"], r["override_value"]) for r in stored["dev_rules"]] == [
        (other["id"], 42)
    ]
    edit = (await client.get(f"{UI}/clients/{stored['id']}/edit")).text
    assert f'<option value="{other["id"]}" selected>' in edit

    form |= {"endpoint_ids": [str(alerts["id"]), str(other["id"])], "is_dev_client": "on"}
    form |= {"dev_target_param": [""], "dev_override_value": [""], "description": ""}
    saved = await client.post(f"{UI}/clients/{stored['id']}/edit", data=form)
    assert saved.headers["location"] == f"{UI}/clients"
    after = await _api(client, "GET", f"/clients/{stored['id']}")
    assert after["endpoint_ids"] == [alerts["id"], other["id"]]
    assert (after["is_dev_client"], after["dev_rules"], after["description"]) == (True, [], None)

    refused = await client.post(f"{UI}/clients", data={"csrf_token": csrf, "name": ""})
    assert refused.status_code == 422
    assert "Name: String should have at least 1 character" in refused.text

    rotated = await client.post(
        f"{UI}/clients/{stored['id']}/rotate-token", data={"csrf_token": csrf}
    )
    new_token = re.search(r'data-testid="new-secret">(dpy_[^<]+)<', rotated.text)
    assert new_token
    assert new_token.group(1) != token.group(1)
    deleted = await client.post(f"{UI}/clients/{stored['id']}/delete", data={"csrf_token": csrf})
    assert deleted.headers["location"] == f"{UI}/clients"
    assert await _api(client, "GET", "/clients") == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_the_smtp_test_reports_each_outcome(client: httpx.AsyncClient) -> None:
    csrf = await _admin(client)

    async def tested(port: int | None) -> str:
        if port is not None:
            smtp = {"smtp_server": "127.0.0.1", "smtp_port": port, "smtp_encryption": "none"}
            await _api(client, "PUT", "/settings", json=smtp)
        answer = await client.post(
            f"{UI}/settings/test-smtp", data={"csrf_token": csrf}, headers=HTMX
        )
        assert answer.status_code == 200
        return answer.text

    assert "Not configured yet:</strong> SMTP is not configured" in await tested(None)
    assert "Connection failed:</strong> ConnectionRefusedError" in await tested(_closed_port())
    server = Controller(object(), hostname="127.0.0.1", port=free_port())
    server.start()
    try:
        works = await tested(server.port)
    finally:
        server.stop()
    assert f"Connection works:</strong> connected to 127.0.0.1:{server.port}" in works


async def test_settings_keep_a_password_left_blank(client: httpx.AsyncClient) -> None:
    csrf = await _admin(client)
    form = {
        "csrf_token": csrf,
        "smtp_server": "smtp.example.com",
        "smtp_port": "2525",
        "smtp_encryption": "ssl_tls",
        "smtp_timeout_seconds": "5",
        "smtp_username": "mailer",
        "smtp_password": "hunter2-password",
        "email_from": "dispatch@example.com",
        "enable_task_cleanup": "on",
        "task_cleanup_days": "14",
    }
    saved = await client.post(f"{UI}/settings", data=form)
    assert (saved.status_code, saved.headers["location"]) == (303, f"{UI}/settings?saved=1")
    stored = await _api(client, "GET", "/settings")
    assert (stored["smtp_port"], stored["smtp_encryption"], stored["task_cleanup_days"]) == (
        2525,
        "ssl_tls",
        14,
    )
    assert stored["smtp_password"] is not None
    page = (await client.get(f"{UI}/settings?saved=1")).text
    assert "hunter2-password" not in page
    assert "set; leave blank to keep" in page
    assert "Settings saved." in page

    form |= {"smtp_password": "", "smtp_port": "", "enable_task_cleanup": ""}
    del form["enable_task_cleanup"]
    await client.post(f"{UI}/settings", data=form)
    kept = await _api(client, "GET", "/settings")
    assert (kept["smtp_password"], kept["smtp_port"], kept["enable_task_cleanup"]) == (
        stored["smtp_password"],
        2525,
        False,
    )
    await client.post(f"{UI}/settings", data=form | {"clear_password": "on"})
    assert (await _api(client, "GET", "/settings"))["smtp_password"] is None
    refused = await client.post(f"{UI}/settings", data=form | {"task_cleanup_days": "0"})
    assert refused.status_code == 422
    assert "Task cleanup days: Input should be greater than or equal to 1" in refused.text
