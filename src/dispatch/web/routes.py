"""Admin UI pages under ``/ui``: login, logout, dashboard and API keys."""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from dispatch.deps import RuntimeDep, SessionDep
from dispatch.ops import service
from dispatch.runtime import Runtime
from dispatch.security import api_keys, sessions
from dispatch.security.ratelimit import client_ip
from dispatch.security.scopes import Scope
from dispatch.web import gateway_pages, gateway_task_pages, queue_pages
from dispatch.web.auth import (
    CsrfUserDep,
    LoginRequired,
    UiUserDep,
    authenticate_login,
    check_login_csrf,
    set_login_csrf,
    start_session,
)
from dispatch.web.pages import HERE, page

router = APIRouter(prefix="/ui", include_in_schema=False)


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/ui/"


def _login_page(
    request: Request, runtime: Runtime, next: str | None, error: str | None, status: int
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    context = {"next": _safe_next(next), "error": error, "csrf_token": token}
    rendered = page(request, "login.html", context, status)
    set_login_csrf(runtime, request, rendered, token)
    return rendered


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, runtime: RuntimeDep, next: str | None = None) -> Response:
    return _login_page(request, runtime, next, None, 200)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    secret: Annotated[str, Form(max_length=512)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
    next: Annotated[str | None, Form()] = None,
) -> Response:
    await runtime.limiter.hit("login", "ip:" + client_ip(request, runtime.limiter.trusted))
    check_login_csrf(runtime, request, csrf_token)
    outcome = await authenticate_login(runtime, secret) if secret else None
    if outcome is None:
        return _login_page(request, runtime, next, "Wrong password or key.", 401)
    method, principal = outcome
    response = RedirectResponse(_safe_next(next), status_code=303)
    await start_session(runtime, request, session, response, method, principal)
    runtime.telemetry.emit("ui.login", method=method)
    return response


@router.post("/logout")
async def logout(session: SessionDep, user: CsrfUserDep) -> Response:
    await sessions.close_session(session, user.token)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(sessions.SESSION_COOKIE, path="/")
    return response


async def _dashboard_context(request: Request) -> dict[str, Any]:
    runtime = request.app.state.runtime
    checks = await service.readiness(runtime)
    return {
        "info": service.service_info(runtime),
        "checks": {name: check.as_json() for name, check in checks.items()},
        "ready": all(check.ok for check in checks.values()),
    }


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, session: SessionDep, user: UiUserDep) -> Response:
    keys = await api_keys.list_keys(session)
    context = await _dashboard_context(request)
    return page(request, "dashboard.html", context | {"user": user, "key_count": len(keys)})


@router.get("/partials/health", response_class=HTMLResponse)
async def health_partial(request: Request, user: UiUserDep) -> Response:
    return page(request, "_health.html", await _dashboard_context(request) | {"user": user})


@router.get("/keys", response_class=HTMLResponse)
async def keys_page(request: Request, session: SessionDep, user: UiUserDep) -> Response:
    keys = await api_keys.list_keys(session, include_revoked=True)
    context = {
        "user": user,
        "keys": keys,
        "scopes": [str(scope) for scope in Scope],
        "created": None,
    }
    return page(request, "keys.html", context)


@router.post("/keys", response_class=HTMLResponse)
async def create_key(
    request: Request,
    session: SessionDep,
    user: CsrfUserDep,
    name: Annotated[str, Form(min_length=1, max_length=100)],
    scopes: Annotated[list[Scope], Form()],
) -> Response:
    record, plaintext = await api_keys.create_key(session, name, scopes)
    keys = await api_keys.list_keys(session, include_revoked=True)
    context = {
        "user": user,
        "keys": keys,
        "scopes": [str(scope) for scope in Scope],
        "created": {"name": record.name, "key": plaintext},
    }
    return page(request, "keys.html", context, status=201)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: int, session: SessionDep, user: CsrfUserDep) -> Response:
    await api_keys.revoke_key(session, key_id)
    return RedirectResponse("/ui/keys", status_code=303)


async def _render_error(request: Request, status: int, code: str, message: str) -> Response | None:
    if not request.url.path.startswith("/ui"):
        return None
    if code == LoginRequired.code:
        target = quote(request.url.path, safe="/")
        return RedirectResponse(f"/ui/login?next={target}", status_code=303)
    context = {"status": status, "code": code, "message": message}
    return page(request, "error.html", context, status=status)


def install(app: FastAPI) -> None:
    """Mount static assets and the UI, and render UI errors as HTML pages."""
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)
    app.include_router(queue_pages.router)
    app.include_router(gateway_pages.router)
    app.include_router(gateway_task_pages.router)
    app.state.html_error_renderer = _render_error

    @app.get("/login", include_in_schema=False)
    async def seed_login_redirect() -> Response:
        """Seed 002 served its login page at /login."""
        return RedirectResponse("/ui/login", status_code=307)

    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> Response:
        return RedirectResponse("/ui/", status_code=307)
