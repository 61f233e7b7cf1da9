"""Admin UI pages for configuring the gateway: resources, endpoints, rules, clients, settings.

Every change calls the same service function as the JSON admin API
(``dispatch.gateway.routes``) and drops the ingress cache the same way. A change runs in a
savepoint: when a service refuses it (reserved or duplicate path, unknown ids) nothing of
it is kept and the form comes back with the reason and a 4xx status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import BadRequest, Conflict, NotFound, ValidationFailed
from dispatch.gateway import clients, endpoints, health, resources, settings_store
from dispatch.gateway.mapping import MATCH_KINDS, SOURCE_TYPES
from dispatch.gateway.routes import reserved_paths
from dispatch.gateway.schemas import (
    CheckResult,
    ClientCreate,
    ClientUpdate,
    EndpointCreate,
    EndpointUpdate,
    HttpMethod,
    MappingTestIn,
    ResourceCreate,
    ResourceUpdate,
)
from dispatch.models import GatewayClient, GatewayEndpoint, GatewayResource
from dispatch.runtime import Runtime
from dispatch.web import gateway_forms as forms
from dispatch.web.auth import CsrfUserDep, UiUser, UiUserDep
from dispatch.web.pages import page

router = APIRouter(prefix="/ui/gateway", include_in_schema=False)

HISTORY_SIZE = 100
_REFUSALS = (forms.FormInvalid, BadRequest, Conflict, ValidationFailed)


@dataclass(frozen=True, slots=True)
class Ui:
    """What every handler here needs: the request, its session, the runtime, the admin."""

    request: Request
    session: AsyncSession
    runtime: Runtime
    user: UiUser

    def render(self, name: str, context: dict[str, Any], status: int = 200) -> Response:
        base = {"user": self.user, "pretty": forms.pretty_json}
        return page(self.request, f"gateway/{name}", base | context, status)

    def invalidate(self) -> None:
        """Drop this process's ingress cache after a change, as the API does."""
        self.runtime.gateway.directory.invalidate()

    def changed(self, target: str) -> Response:
        """After a change: drop the ingress cache and go to ``target``."""
        self.invalidate()
        return RedirectResponse(target, status_code=303)

    async def form(self) -> FormData:
        return await self.request.form()


async def _viewer(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: UiUserDep
) -> Ui:
    return Ui(request, session, runtime, user)


async def _editor(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: CsrfUserDep
) -> Ui:
    return Ui(request, session, runtime, user)


View = Annotated[Ui, Depends(_viewer)]
Edit = Annotated[Ui, Depends(_editor)]


@asynccontextmanager
async def _change(session: AsyncSession) -> AsyncIterator[None]:
    """A change in a savepoint, flushed inside it, so a refusal leaves nothing behind."""
    async with session.begin_nested():
        yield
        await session.flush()


# Resources ---------------------------------------------------------------------------------


@router.get("/resources", response_class=HTMLResponse)
async def resources_page(ui: View) -> Response:
    return ui.render("resources.html", {"resources": await resources.list_resources(ui.session)})


def _resource_form(
    ui: Ui, values: forms.Values, resource_id: int | None, exc: Exception | None = None
) -> Response:
    errors, status = forms.refusal(exc)
    context = {"v": values, "resource_id": resource_id, "errors": errors}
    return ui.render("resource_form.html", context | {"methods": get_args(HttpMethod)}, status)


async def _resource_page(
    ui: Ui, resource_id: int, secret: dict[str, Any] | None = None, status: int = 200
) -> Response:
    """The resource with its health history; ``secret`` is a signing secret shown this once."""
    out = await resources.resource_view(ui.session, resource_id)
    checks = await health.history(ui.session, resource_id, HISTORY_SIZE)
    return ui.render("resource.html", {"r": out, "checks": checks, "secret": secret}, status)


@router.get("/resources/new", response_class=HTMLResponse)
async def new_resource(ui: View) -> Response:
    values = forms.values_from(forms.column_defaults(GatewayResource), forms.RESOURCE)
    return _resource_form(ui, values, None)


@router.post("/resources", response_class=HTMLResponse)
async def create_resource(ui: Edit) -> Response:
    values = forms.values_from_form(await ui.form(), forms.RESOURCE)
    try:
        data = forms.parse(ResourceCreate, forms.body(values, forms.RESOURCE))
        async with _change(ui.session):
            resource, secret = await resources.create_resource(ui.session, data, utcnow())
    except _REFUSALS as exc:
        return _resource_form(ui, values, None, exc)
    ui.invalidate()
    shown = {"value": secret, "why": "Resource created."}
    return await _resource_page(ui, resource.id, shown, status=201)


@router.get("/resources/{resource_id:int}", response_class=HTMLResponse)
async def resource_page(resource_id: int, ui: View) -> Response:
    return await _resource_page(ui, resource_id)


@router.get("/resources/{resource_id:int}/edit", response_class=HTMLResponse)
async def edit_resource(resource_id: int, ui: View) -> Response:
    out = await resources.resource_view(ui.session, resource_id)
    return _resource_form(ui, forms.values_from(out.model_dump(), forms.RESOURCE), resource_id)


@router.post("/resources/{resource_id:int}/edit", response_class=HTMLResponse)
async def update_resource(resource_id: int, ui: Edit) -> Response:
    """A masked header value sent back unchanged keeps the stored secret (the service merges)."""
    values = forms.values_from_form(await ui.form(), forms.RESOURCE)
    try:
        data = forms.parse(ResourceUpdate, forms.body(values, forms.RESOURCE))
        async with _change(ui.session):
            await resources.update_resource(ui.session, resource_id, data, utcnow())
    except _REFUSALS as exc:
        return _resource_form(ui, values, resource_id, exc)
    return ui.changed(f"/ui/gateway/resources/{resource_id}")


@router.post("/resources/{resource_id:int}/toggle")
async def toggle_resource(resource_id: int, ui: Edit) -> Response:
    resource = await resources.get_resource(ui.session, resource_id)
    change = ResourceUpdate(is_active=not resource.is_active)
    await resources.update_resource(ui.session, resource_id, change, utcnow())
    return ui.changed("/ui/gateway/resources")


@router.post("/resources/{resource_id:int}/duplicate", response_class=HTMLResponse)
async def duplicate_resource(resource_id: int, ui: Edit) -> Response:
    """The copy is inactive with health checks off; its own signing secret is shown once."""
    copy, secret = await resources.duplicate_resource(ui.session, resource_id, utcnow())
    ui.invalidate()
    shown = {"value": secret, "why": "Copy created, inactive and with health checks off."}
    return await _resource_page(ui, copy.id, shown, status=201)


@router.post("/resources/{resource_id:int}/delete")
async def delete_resource(resource_id: int, ui: Edit) -> Response:
    await resources.delete_resource(ui.session, resource_id)
    return ui.changed("/ui/gateway/resources")


@router.post("/resources/{resource_id:int}/rotate-secret", response_class=HTMLResponse)
async def rotate_secret(resource_id: int, ui: Edit) -> Response:
    grace = timedelta(hours=ui.runtime.settings.gateway_secret_grace_hours)
    secret, expires = await resources.rotate_secret(ui.session, resource_id, grace, utcnow())
    ui.invalidate()
    shown = {"value": secret, "expires": expires, "why": "Signing secret rotated."}
    return await _resource_page(ui, resource_id, shown)


@router.post("/resources/{resource_id:int}/check", response_class=HTMLResponse)
async def check_resource(resource_id: int, ui: Edit) -> Response:
    """Probe now; htmx gets the result in place, a plain form post the resource's page."""
    htmx = ui.request.headers.get("HX-Request") == "true"
    # End the request's transaction first: the check opens its own, after the probe.
    await ui.session.commit()
    try:
        result, state = await health.check_now(ui.runtime.gateway, resource_id)
    except Conflict:
        if not htmx:
            raise
        return ui.render("_cfg_check.html", {"busy": True, "resource_id": resource_id}, 409)
    if not htmx:
        return RedirectResponse(f"/ui/gateway/resources/{resource_id}", status_code=303)
    outcome = CheckResult(
        success=result.success,
        status_code=result.status_code,
        detail=result.detail,
        duration_ms=result.duration_ms,
        breaker_state=state,
        request_id=ui.request.state.request_id,
    )
    return ui.render("_cfg_check.html", {"result": outcome, "resource_id": resource_id})


# Endpoints ---------------------------------------------------------------------------------


@router.get("/endpoints", response_class=HTMLResponse)
async def endpoints_page(ui: View) -> Response:
    return ui.render("endpoints.html", {"endpoints": await endpoints.list_endpoints(ui.session)})


async def _endpoint_form(
    ui: Ui, values: forms.Values, endpoint_id: int | None, exc: Exception | None = None
) -> Response:
    errors, status = forms.refusal(exc)
    known = await resources.list_resources(ui.session)
    context = {
        "v": values,
        "endpoint_id": endpoint_id,
        "errors": errors,
        "resources": {str(r.id): r for r in known},
        "clients": await clients.list_clients(ui.session),
    }
    return ui.render("endpoint_form.html", context, status)


@router.get("/endpoints/new", response_class=HTMLResponse)
async def new_endpoint(ui: View) -> Response:
    stored = forms.column_defaults(GatewayEndpoint) | {
        "required_params": endpoints.DEFAULT_REQUIRED
    }
    return await _endpoint_form(ui, forms.values_from(stored, forms.ENDPOINT), None)


@router.post("/endpoints", response_class=HTMLResponse)
async def create_endpoint(ui: Edit) -> Response:
    values = forms.values_from_form(await ui.form(), forms.ENDPOINT)
    try:
        data = forms.parse(EndpointCreate, forms.body(values, forms.ENDPOINT))
        async with _change(ui.session):
            reserved = reserved_paths(ui.runtime.settings)
            await endpoints.create_endpoint(ui.session, data, reserved, utcnow())
    except _REFUSALS as exc:
        return await _endpoint_form(ui, values, None, exc)
    return ui.changed("/ui/gateway/endpoints")


@router.get("/endpoints/{endpoint_id:int}/edit", response_class=HTMLResponse)
async def edit_endpoint(endpoint_id: int, ui: View) -> Response:
    endpoint = await endpoints.get_endpoint(ui.session, endpoint_id)
    out = await endpoints.endpoint_out(ui.session, endpoint)
    stored = out.model_dump() | {"resource_ids": [r.id for r in out.resources]}
    return await _endpoint_form(ui, forms.values_from(stored, forms.ENDPOINT), endpoint_id)


@router.post("/endpoints/{endpoint_id:int}/edit", response_class=HTMLResponse)
async def update_endpoint(endpoint_id: int, ui: Edit) -> Response:
    """``resource_ids`` arrive in the order the list was dragged into: the failover order."""
    values = forms.values_from_form(await ui.form(), forms.ENDPOINT)
    try:
        data = forms.parse(EndpointUpdate, forms.body(values, forms.ENDPOINT))
        async with _change(ui.session):
            reserved = reserved_paths(ui.runtime.settings)
            await endpoints.update_endpoint(ui.session, endpoint_id, data, reserved, utcnow())
    except _REFUSALS as exc:
        return await _endpoint_form(ui, values, endpoint_id, exc)
    return ui.changed("/ui/gateway/endpoints")


async def _toggle_endpoint(ui: Ui, endpoint_id: int, flag: str) -> Response:
    endpoint = await endpoints.get_endpoint(ui.session, endpoint_id)
    change = EndpointUpdate.model_validate({flag: not getattr(endpoint, flag)})
    reserved = reserved_paths(ui.runtime.settings)
    await endpoints.update_endpoint(ui.session, endpoint_id, change, reserved, utcnow())
    return ui.changed("/ui/gateway/endpoints")


@router.post("/endpoints/{endpoint_id:int}/toggle-active")
async def toggle_endpoint(endpoint_id: int, ui: Edit) -> Response:
    return await _toggle_endpoint(ui, endpoint_id, "is_active")


@router.post("/endpoints/{endpoint_id:int}/toggle-dev")
async def toggle_dev_mode(endpoint_id: int, ui: Edit) -> Response:
    return await _toggle_endpoint(ui, endpoint_id, "is_development_mode")


@router.post("/endpoints/{endpoint_id:int}/duplicate")
async def duplicate_endpoint(endpoint_id: int, ui: Edit) -> Response:
    reserved = reserved_paths(ui.runtime.settings)
    await endpoints.duplicate_endpoint(ui.session, endpoint_id, reserved, utcnow())
    return ui.changed("/ui/gateway/endpoints")


@router.post("/endpoints/{endpoint_id:int}/delete")
async def delete_endpoint(endpoint_id: int, ui: Edit) -> Response:
    await endpoints.delete_endpoint(ui.session, endpoint_id)
    return ui.changed("/ui/gateway/endpoints")


# Rules -------------------------------------------------------------------------------------

RuleRows = tuple[list[forms.Row], list[forms.Row]]


def _rule_rows(form: FormData) -> RuleRows:
    return (
        forms.rows_from_form(form, "map_", forms.MAPPING_COLUMNS),
        forms.rows_from_form(form, "dev_", forms.DEV_COLUMNS),
    )


async def _rules_page(
    ui: Ui, endpoint_id: int, rows: RuleRows, exc: Exception | None = None
) -> Response:
    errors, status = forms.refusal(exc)
    endpoint = await endpoints.get_endpoint(ui.session, endpoint_id)
    context = {
        "endpoint": await endpoints.endpoint_out(ui.session, endpoint),
        "mapping": rows[0],
        "dev": rows[1],
        "clients": await clients.list_clients(ui.session),
        "source_types": SOURCE_TYPES,
        "match_kinds": MATCH_KINDS,
        "errors": errors,
        "saved": ui.request.query_params.get("saved") == "1",
    }
    return ui.render("rules.html", context, status)


@router.get("/endpoints/{endpoint_id:int}/rules", response_class=HTMLResponse)
async def rules_page(endpoint_id: int, ui: View) -> Response:
    stored = await endpoints.get_rules(ui.session, endpoint_id)
    rows = (forms.mapping_rows(stored.mapping), forms.dev_rows(stored.dev_rules))
    return await _rules_page(ui, endpoint_id, rows)


@router.post("/endpoints/{endpoint_id:int}/rules", response_class=HTMLResponse)
async def save_rules(endpoint_id: int, ui: Edit) -> Response:
    """Replace all of the endpoint's mapping and dev rules, as ``PUT .../rules`` does."""
    rows = _rule_rows(await ui.form())
    try:
        rules = forms.endpoint_rules(*rows)
        async with _change(ui.session):
            await endpoints.replace_rules(ui.session, endpoint_id, rules)
    except _REFUSALS as exc:
        return await _rules_page(ui, endpoint_id, rows, exc)
    return ui.changed(f"/ui/gateway/endpoints/{endpoint_id}/rules?saved=1")


@router.post("/endpoints/{endpoint_id:int}/rules/test", response_class=HTMLResponse)
async def mapping_test(endpoint_id: int, ui: Edit) -> Response:
    """What each resource would receive for the sample, with the rules as edited (unsaved)."""
    form = await ui.form()
    try:
        data = {
            "payload": forms.json_object(forms.text_of(form, "sample"), "Sample payload"),
            "client_id": forms.text_of(form, "test_client_id") or None,
            "rules": forms.endpoint_rules(*_rule_rows(form)),
        }
        test = forms.parse(MappingTestIn, data)
        outcome = await endpoints.try_mapping(ui.session, endpoint_id, test, utcnow())
    except (*_REFUSALS, NotFound) as exc:
        errors, status = forms.refusal(exc)
        return ui.render("_cfg_mapping_result.html", {"errors": errors}, status)
    return ui.render("_cfg_mapping_result.html", {"outcome": outcome, "errors": []})


# Clients -----------------------------------------------------------------------------------


async def _clients_page(ui: Ui, token: dict[str, str] | None = None, status: int = 200) -> Response:
    """The clients; ``token`` is a client token shown this once."""
    listed = await endpoints.list_endpoints(ui.session)
    context = {
        "clients": await clients.list_clients(ui.session),
        "paths": {e.id: e.path for e in listed},
        "token": token,
    }
    return ui.render("clients.html", context, status)


@router.get("/clients", response_class=HTMLResponse)
async def clients_page(ui: View) -> Response:
    return await _clients_page(ui)


async def _client_form(
    ui: Ui, values: forms.Values, client_id: int | None, exc: Exception | None = None
) -> Response:
    errors, status = forms.refusal(exc)
    context = {
        "v": values,
        "client_id": client_id,
        "errors": errors,
        "endpoints": await endpoints.list_endpoints(ui.session),
        "match_kinds": MATCH_KINDS,
    }
    return ui.render("client_form.html", context, status)


def _client_values(form: FormData) -> forms.Values:
    rows = forms.rows_from_form(form, "dev_", forms.DEV_COLUMNS)
    return forms.values_from_form(form, forms.CLIENT) | {"dev": rows}


def _client_body(values: forms.Values) -> dict[str, Any]:
    rules = forms.dev_rules(values["dev"], with_endpoint=True)
    return forms.body(values, forms.CLIENT) | {"dev_rules": rules}


@router.get("/clients/new", response_class=HTMLResponse)
async def new_client(ui: View) -> Response:
    values = forms.values_from(forms.column_defaults(GatewayClient), forms.CLIENT)
    return await _client_form(ui, values | {"dev": []}, None)


@router.post("/clients", response_class=HTMLResponse)
async def create_client(ui: Edit) -> Response:
    values = _client_values(await ui.form())
    try:
        data = forms.parse(ClientCreate, _client_body(values))
        async with _change(ui.session):
            client, token = await clients.create_client(ui.session, data, utcnow())
    except _REFUSALS as exc:
        return await _client_form(ui, values, None, exc)
    ui.invalidate()
    shown = {"name": client.name, "value": token, "why": "Client created."}
    return await _clients_page(ui, shown, status=201)


@router.get("/clients/{client_id:int}/edit", response_class=HTMLResponse)
async def edit_client(client_id: int, ui: View) -> Response:
    out = await clients.client_out(ui.session, await clients.get_client(ui.session, client_id))
    values = forms.values_from(out.model_dump(), forms.CLIENT)
    return await _client_form(ui, values | {"dev": forms.dev_rows(out.dev_rules)}, client_id)


@router.post("/clients/{client_id:int}/edit", response_class=HTMLResponse)
async def update_client(client_id: int, ui: Edit) -> Response:
    values = _client_values(await ui.form())
    try:
        data = forms.parse(ClientUpdate, _client_body(values))
        async with _change(ui.session):
            await clients.update_client(ui.session, client_id, data, utcnow())
    except _REFUSALS as exc:
        return await _client_form(ui, values, client_id, exc)
    return ui.changed("/ui/gateway/clients")


@router.post("/clients/{client_id:int}/rotate-token", response_class=HTMLResponse)
async def rotate_token(client_id: int, ui: Edit) -> Response:
    client, token = await clients.rotate_token(ui.session, client_id, utcnow())
    ui.invalidate()
    why = "Token rotated; the old one no longer works."
    return await _clients_page(ui, {"name": client.name, "value": token, "why": why})


@router.post("/clients/{client_id:int}/delete")
async def delete_client(client_id: int, ui: Edit) -> Response:
    await clients.delete_client(ui.session, client_id)
    return ui.changed("/ui/gateway/clients")


# Settings ----------------------------------------------------------------------------------


async def _settings_form(ui: Ui, values: forms.Values, exc: Exception | None = None) -> Response:
    errors, status = forms.refusal(exc)
    stored = await settings_store.load(ui.session)
    context = {
        "v": values,
        "password_set": bool(stored.smtp_password),
        "encryptions": get_args(settings_store.Encryption),
        "errors": errors,
        "saved": ui.request.query_params.get("saved") == "1",
    }
    return ui.render("settings.html", context, status)


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(ui: View) -> Response:
    shown = settings_store.shown(await settings_store.load(ui.session))
    return await _settings_form(ui, forms.values_from(shown.model_dump(), forms.SETTINGS))


@router.post("/settings", response_class=HTMLResponse)
async def save_settings(ui: Edit) -> Response:
    """A blank password keeps the stored one; "clear" removes it."""
    form = await ui.form()
    values = forms.values_from_form(form, forms.SETTINGS)
    try:
        data = forms.settings_update(values, form)
        async with _change(ui.session):
            await settings_store.update(ui.session, data, utcnow())
    except (*_REFUSALS, ValidationError) as exc:
        return await _settings_form(ui, values, exc)
    return RedirectResponse("/ui/gateway/settings?saved=1", status_code=303)


@router.post("/settings/test-smtp", response_class=HTMLResponse)
async def test_smtp(ui: Edit) -> Response:
    """Connect and log in with the saved settings (seed 002's test_connection)."""
    smtp = await settings_store.load(ui.session)
    try:
        worked, detail = await settings_store.connection_report(smtp)
    except settings_store.SmtpNotConfigured as exc:
        return ui.render("_cfg_smtp.html", {"success": False, "detail": str(exc), "hint": True})
    return ui.render("_cfg_smtp.html", {"success": worked, "detail": detail})
