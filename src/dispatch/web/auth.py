"""Admin UI authentication: session cookie, login with password or admin key, CSRF."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import AppError, Forbidden
from dispatch.models import AdminSession
from dispatch.runtime import Runtime
from dispatch.security import sessions
from dispatch.security.deps import resolve_principal
from dispatch.security.principal import Principal
from dispatch.security.ratelimit import client_ip
from dispatch.security.scopes import Scope


class LoginRequired(AppError):
    """No live admin session: the UI answers with a redirect to the login page."""

    status, code = 401, "login_required"


@dataclass(frozen=True, slots=True)
class UiUser:
    session: AdminSession
    token: str

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token


def secure_cookies(runtime: Runtime, request: Request) -> bool:
    return runtime.settings.environment == "production" or request.url.scheme == "https"


async def current_user(
    request: Request, response: Response, runtime: RuntimeDep, session: SessionDep
) -> UiUser:
    signed = request.cookies.get(sessions.SESSION_COOKIE)
    token = runtime.signer.unsign(signed) if signed else None
    row = await sessions.load_session(session, token, utcnow()) if token else None
    if row is None or token is None:
        raise LoginRequired("Log in to use the admin UI")
    state = await runtime.limiter.hit("ui", "session:" + row.token_hash[:16])
    if state is not None:
        response.headers.update(state.headers())
    return UiUser(session=row, token=token)


UiUserDep = Annotated[UiUser, Depends(current_user)]


async def _submitted_csrf(request: Request) -> str | None:
    header = request.headers.get(sessions.CSRF_HEADER)
    if header:
        return header
    form = await request.form()
    value = form.get(sessions.CSRF_FIELD)
    return value if isinstance(value, str) else None


async def require_csrf(request: Request, user: UiUserDep) -> UiUser:
    """Every state-changing UI request must carry the session's CSRF token."""
    if not sessions.tokens_match(user.csrf_token, await _submitted_csrf(request)):
        raise Forbidden(
            "CSRF token missing or invalid; reload the page and try again", code="csrf_failed"
        )
    return user


CsrfUserDep = Annotated[UiUser, Depends(require_csrf)]


def set_login_csrf(runtime: Runtime, request: Request, response: Response, token: str) -> None:
    """Pair the login form's token with a signed cookie (double submit: no session yet)."""
    response.set_cookie(
        sessions.LOGIN_CSRF_COOKIE,
        runtime.signer.sign(token),
        httponly=True,
        samesite="strict",
        secure=secure_cookies(runtime, request),
        path="/ui/login",
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
) -> None:
    token, _ = await sessions.open_session(
        session,
        method=method,
        api_key_id=principal.key_id if principal else None,
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
    response.delete_cookie(sessions.LOGIN_CSRF_COOKIE, path="/ui/login")
