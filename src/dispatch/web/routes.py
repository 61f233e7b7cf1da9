"""Admin UI pages under ``/ui``: login (admin, gateway client or watch user), logout, dashboard
and API keys.

Seed 002's auth paths (``/login``, ``/client/login``, ``/client/dashboard``, ``/logout``,
``/client/logout``) answer too, with the same CSRF checks and rate limits.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from dispatch.deps import RuntimeDep, SessionDep
from dispatch.gateway import clients
from dispatch.ops import service
from dispatch.runtime import Runtime
from dispatch.security import api_keys, sessions
from dispatch.security.ratelimit import client_ip
from dispatch.security.scopes import Scope
from dispatch.web import (
    catalog_pages,
    fleet_pages,
    gateway_pages,
    gateway_task_pages,
    queue_pages,
    watch_discogs,
    watch_pages,
)
from dispatch.web.auth import (
    ADMIN,
    CLIENT,
    USER,
    CsrfSignedInDep,
    CsrfUserDep,
    LoginRequired,
    UiUser,
    UiUserDep,
    authenticate_login,
    authenticate_user,
    check_login_csrf,
    set_login_csrf,
    start_session,
)
from dispatch.web.pages import HERE, page

router = APIRouter(prefix="/ui", include_in_schema=False)
seed_router = APIRouter(include_in_schema=False)

CLIENT_HOME = "/ui/gateway/tasks"
# Where a client session may land after login; anything else would answer 403.
_CLIENT_PAGES = ("/ui/gateway/tasks", "/documentation")
WATCH_HOME = "/ui/watch"
_TABS = (ADMIN, CLIENT, USER)
# Paths whose errors are HTML pages (a missing session redirects to the login page).
_HTML_PATHS = ("/ui", "/documentation", "/client/", "/logout")


def _is_local(target: str | None) -> bool:
    """A path on this site; browsers read ``//host`` and ``/\\host`` as another site."""
    return target is not None and target.startswith("/") and not target.startswith(("//", "/\\"))


def _safe_next(target: str | None) -> str:
    return target if target and _is_local(target) else "/ui/"


def _client_next(target: str | None) -> str:
    if target and _is_local(target):
        path = target.split("?", 1)[0]
        if path == "/ui/gateway" or path.startswith(_CLIENT_PAGES):
            return target
    return CLIENT_HOME


def _watch_next(target: str | None) -> str:
    """Where a watch user lands: the watch page asked for, else their dashboard."""
    if target and _is_local(target):
        path = target.split("?", 1)[0]
        if path == WATCH_HOME or path.startswith(WATCH_HOME + "/"):
            return target
    return WATCH_HOME


def _login_page(
    request: Request,
    runtime: Runtime,
    next: str | None,
    error: str | None,
    status: int,
    tab: str = ADMIN,
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    context = {
        "next": next if _is_local(next) else "",
        "error": error,
        "csrf_token": token,
        "tab": tab if tab in _TABS else ADMIN,
    }
    rendered = page(request, "login.html", context, status)
    rendered.headers["Cache-Control"] = "no-store"
    set_login_csrf(runtime, request, rendered, token)
    return rendered


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request, runtime: RuntimeDep, next: str | None = None, tab: str = ADMIN
) -> Response:
    return _login_page(request, runtime, next, None, 200, tab)


async def _login_attempt(runtime: Runtime, request: Request, csrf_token: str | None) -> None:
    await runtime.limiter.hit("login", "ip:" + client_ip(request, runtime.limiter.trusted))
    check_login_csrf(runtime, request, csrf_token)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    secret: Annotated[str, Form(max_length=512)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
    next: Annotated[str | None, Form()] = None,
) -> Response:
    await _login_attempt(runtime, request, csrf_token)
    outcome = await authenticate_login(runtime, secret) if secret else None
    if outcome is None:
        return _login_page(request, runtime, next, "Wrong password or key.", 401)
    method, principal = outcome
    response = RedirectResponse(_safe_next(next), status_code=303)
    await start_session(runtime, request, session, response, method, principal)
    runtime.telemetry.emit("ui.login", method=method)
    return response


@router.post("/login/client", response_class=HTMLResponse)
@seed_router.post("/client/login", response_class=HTMLResponse)
async def client_login(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    token: Annotated[str, Form(max_length=512)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
    next: Annotated[str | None, Form()] = None,
) -> Response:
    """A gateway client signs in with its API token; the session keeps only the client's id."""
    await _login_attempt(runtime, request, csrf_token)
    client = await clients.authenticate(session, token.strip()) if token.strip() else None
    if client is None:
        error = "Unknown or inactive client token."
        return _login_page(request, runtime, next, error, 401, CLIENT)
    response = RedirectResponse(_client_next(next), status_code=303)
    await start_session(runtime, request, session, response, "client_token", None, client.id)
    runtime.telemetry.emit("ui.login", method="client_token")
    return response


@router.post("/login/user", response_class=HTMLResponse)
async def user_login(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
    next: Annotated[str | None, Form()] = None,
) -> Response:
    """A watch user signs in with email and password; the session keeps only the user's id."""
    await _login_attempt(runtime, request, csrf_token)
    person = await authenticate_user(session, email, password) if email and password else None
    if person is None:
        return _login_page(request, runtime, next, "Wrong email or password.", 401, USER)
    if not person.is_active:
        return _login_page(request, runtime, next, "This account is inactive.", 403, USER)
    response = RedirectResponse(_watch_next(next), status_code=303)
    method = "user_password"
    await start_session(runtime, request, session, response, method, None, user_id=person.id)
    runtime.telemetry.emit("ui.login", method=method)
    return response


@router.post("/logout")
@seed_router.post("/logout")
@seed_router.post("/client/logout")
async def logout(session: SessionDep, user: CsrfSignedInDep) -> Response:
    await sessions.close_session(session, user.token)
    target = "/ui/login" if user.is_admin else f"/ui/login?tab={user.role}"
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(sessions.SESSION_COOKIE, path="/")
    return response


@seed_router.get("/login")
async def seed_login_redirect() -> Response:
    """Seed 002 served its login page at /login."""
    return RedirectResponse("/ui/login", status_code=307)


@seed_router.get("/client/login")
async def seed_client_login_redirect() -> Response:
    return RedirectResponse("/ui/login?tab=client", status_code=307)


@seed_router.get("/client/dashboard")
async def seed_client_dashboard_redirect() -> Response:
    return RedirectResponse("/ui/gateway", status_code=307)


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
    if not request.url.path.startswith(_HTML_PATHS):
        return None
    if code == LoginRequired.code:
        target = "/ui/"
        if request.method == "GET":
            query = request.url.query
            target = quote(request.url.path + (f"?{query}" if query else ""), safe="/")
        tab = f"&tab={USER}" if request.url.path.startswith(WATCH_HOME) else ""
        return RedirectResponse(f"/ui/login?next={target}{tab}", status_code=303)
    user: UiUser | None = getattr(request.state, "ui_user", None)
    context = {"status": status, "code": code, "message": message, "user": user}
    return page(request, "error.html", context, status=status)


def install(app: FastAPI) -> None:
    """Mount static assets and the UI, and render UI errors as HTML pages."""
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)
    app.include_router(seed_router)
    app.include_router(queue_pages.router)
    app.include_router(gateway_pages.router)
    app.include_router(gateway_task_pages.router)
    app.include_router(catalog_pages.router)
    app.include_router(fleet_pages.router)
    app.include_router(watch_pages.router)
    app.include_router(watch_discogs.router)
    app.state.html_error_renderer = _render_error

    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> Response:
        return RedirectResponse("/ui/", status_code=307)
