"""UI authentication: session cookie, login (admin password or key, gateway client token), CSRF.

Two roles share one session table: an admin session, and a gateway client's session
(``client_id`` set) that may only use the gateway task pages and sees its own tasks.
``UiUserDep`` / ``CsrfUserDep`` admit admins only; ``ViewerDep`` / ``CsrfViewerDep``
admit both, and the pages pass ``user.client_id`` to the services as the owner.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import AppError, Forbidden
from dispatch.models import GatewayClient
from dispatch.runtime import Runtime
from dispatch.security import sessions
from dispatch.security.deps import resolve_principal
from dispatch.security.principal import Principal
from dispatch.security.ratelimit import client_ip
from dispatch.security.scopes import Scope


class LoginRequired(AppError):
    """No live session: the UI answers with a redirect to the login page."""

    status, code = 401, "login_required"


ADMIN = "admin"
CLIENT = "client"


@dataclass(frozen=True, slots=True)
class UiUser:
    """Who is signed in: an admin, or a gateway client that sees only its own tasks.

    Plain values copied from the session row, so an error page rendered after the
    request's transaction rolled back can still show them.
    """

    token: str
    csrf_token: str
    login_method: str
    client_id: int | None = None  # the services' ``owner``; None for an admin
    client_name: str | None = None

    @property
    def role(self) -> str:
        return ADMIN if self.client_id is None else CLIENT

    @property
    def is_admin(self) -> bool:
        return self.client_id is None


def secure_cookies(runtime: Runtime, request: Request) -> bool:
    return runtime.settings.environment == "production" or request.url.scheme == "https"


async def optional_viewer(
    request: Request, response: Response, runtime: RuntimeDep, session: SessionDep
) -> UiUser | None:
    """The signed-in admin or client, or None without a live session."""
    signed = request.cookies.get(sessions.SESSION_COOKIE)
    token = runtime.signer.unsign(signed) if signed else None
    row = await sessions.load_session(session, token, utcnow()) if token else None
    if row is None or token is None:
        return None
    state = await runtime.limiter.hit("ui", "session:" + row.token_hash[:16])
    if state is not None:
        response.headers.update(state.headers())
    client = await session.get(GatewayClient, row.client_id) if row.client_id else None
    user = UiUser(
        token=token,
        csrf_token=row.csrf_token,
        login_method=row.login_method,
        client_id=row.client_id,
        client_name=client.name if client else None,
    )
    request.state.ui_user = user  # error pages show the navigation that fits the role
    return user


async def current_viewer(user: Annotated[UiUser | None, Depends(optional_viewer)]) -> UiUser:
    """An admin or a gateway client; anyone else is sent to the login page."""
    if user is None:
        raise LoginRequired("Log in to use the admin UI")
    return user


async def current_user(user: Annotated[UiUser, Depends(current_viewer)]) -> UiUser:
    """An admin; a gateway client's session is refused (403), whatever the page."""
    if not user.is_admin:
        raise Forbidden(
            "This page is for administrators; you are signed in as a gateway client",
            code="admin_only",
        )
    return user


OptionalViewerDep = Annotated[UiUser | None, Depends(optional_viewer)]
ViewerDep = Annotated[UiUser, Depends(current_viewer)]
UiUserDep = Annotated[UiUser, Depends(current_user)]


async def _submitted_csrf(request: Request) -> str | None:
    header = request.headers.get(sessions.CSRF_HEADER)
    if header:
        return header
    form = await request.form()
    value = form.get(sessions.CSRF_FIELD)
    return value if isinstance(value, str) else None


async def _check_csrf(request: Request, user: UiUser) -> UiUser:
    """Every state-changing UI request must carry the session's CSRF token."""
    if not sessions.tokens_match(user.csrf_token, await _submitted_csrf(request)):
        raise Forbidden(
            "CSRF token missing or invalid; reload the page and try again", code="csrf_failed"
        )
    return user


async def require_csrf(request: Request, user: UiUserDep) -> UiUser:
    return await _check_csrf(request, user)


async def require_viewer_csrf(request: Request, user: ViewerDep) -> UiUser:
    return await _check_csrf(request, user)


CsrfUserDep = Annotated[UiUser, Depends(require_csrf)]
CsrfViewerDep = Annotated[UiUser, Depends(require_viewer_csrf)]


def set_login_csrf(runtime: Runtime, request: Request, response: Response, token: str) -> None:
    """Pair the login form's token with a signed cookie (double submit: no session yet)."""
    response.set_cookie(
        sessions.LOGIN_CSRF_COOKIE,
        runtime.signer.sign(token),
        httponly=True,
        samesite="strict",
        secure=secure_cookies(runtime, request),
        path="/",  # read by /ui/login, /ui/login/client and seed 002's /client/login
    )


def check_login_csrf(runtime: Runtime, request: Request, submitted: str | None) -> None:
    signed = request.cookies.get(sessions.LOGIN_CSRF_COOKIE)
    expected = runtime.signer.unsign(signed) if signed else None
    if not sessions.tokens_match(expected, submitted):
        raise Forbidden("CSRF token missing or invalid; reload the login page", code="csrf_failed")


async def authenticate_login(runtime: Runtime, secret: str) -> tuple[str, Principal | None] | None:
    """Match the admin password or an admin-scoped key; None when neither matches."""
    password = runtime.settings.gateway_admin_password.get_secret_value()
    if password and hmac.compare_digest(secret.encode(), password.encode()):
        return "password", None
    principal = await resolve_principal(runtime, secret)
    if principal is None:
        return None
    if not principal.allows(Scope.ADMIN):
        raise Forbidden("This key lacks the admin scope the UI needs")
    return "key", principal


async def start_session(
    runtime: Runtime,
    request: Request,
    session: SessionDep,
    response: Response,
    method: str,
    principal: Principal | None,
    client_id: int | None = None,
) -> None:
    token, _ = await sessions.open_session(
        session,
        method=method,
        api_key_id=principal.key_id if principal else None,
        client_id=client_id,
        client_ip=client_ip(request, runtime.limiter.trusted),
        max_age_seconds=runtime.settings.session_max_age_seconds,
    )
    response.set_cookie(
        sessions.SESSION_COOKIE,
        runtime.signer.sign(token),
        max_age=runtime.settings.session_max_age_seconds,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(runtime, request),
        path="/",
    )
    response.delete_cookie(sessions.LOGIN_CSRF_COOKIE, path="/")
