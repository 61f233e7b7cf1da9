"""UI authentication: session cookie, login (admin password or key, gateway client token,
watch user's email and password), CSRF.

Three roles share one session table: an admin session; a gateway client's session
(``client_id`` set) that may only use the gateway task pages and sees its own tasks; and
a watch user's session (``user_id`` set) that may only use the watch pages and sees its
own rules, events and notifications. Each page names who it admits:

- ``UiUserDep`` / ``CsrfUserDep``: admins only;
- ``ViewerDep`` / ``CsrfViewerDep``: admins and gateway clients (``user.client_id`` is the
  services' owner);
- ``WatchViewerDep``: admins and watch users (``user.user_id`` is the owner, None for all);
- ``WatcherDep`` / ``CsrfWatcherDep``: watch users only (what they change is their own);
- ``SignedInDep`` / ``CsrfSignedInDep``: anyone signed in (logout).

Anyone else is refused with a 403 page; nobody signed in is sent to the login page.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import AppError, Forbidden
from dispatch.models import GatewayClient, User
from dispatch.runtime import Runtime
from dispatch.security import sessions
from dispatch.security.deps import resolve_principal
from dispatch.security.passwords import hash_password, verify_password_async
from dispatch.security.principal import Principal
from dispatch.security.ratelimit import client_ip
from dispatch.security.scopes import Scope
from dispatch.security.users import normalise_email


class LoginRequired(AppError):
    """No live session: the UI answers with a redirect to the login page."""

    status, code = 401, "login_required"


ADMIN = "admin"
CLIENT = "client"
USER = "user"
_HOMES = {ADMIN: "/ui/", CLIENT: "/ui/gateway", USER: "/ui/watch"}
_ROLE_NAMES = {ADMIN: "an administrator", CLIENT: "a gateway client", USER: "a watch user"}
_AUDIENCES = {ADMIN: "administrators", CLIENT: "gateway clients", USER: "watch users"}


@dataclass(frozen=True, slots=True)
class UiUser:
    """Who is signed in: an admin, a gateway client or a watch user (each sees its own).

    Plain values copied from the session row, so an error page rendered after the
    request's transaction rolled back can still show them.
    """

    token: str
    csrf_token: str
    login_method: str
    client_id: int | None = None  # the gateway services' ``owner``; None for an admin
    client_name: str | None = None
    user_id: int | None = None  # the watch services' ``owner``; None for an admin
    user_name: str | None = None

    @property
    def role(self) -> str:
        if self.client_id is not None:
            return CLIENT
        return ADMIN if self.user_id is None else USER

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def home(self) -> str:
        """The page this role lands on (the brand link, after login)."""
        return _HOMES[self.role]


def secure_cookies(runtime: Runtime, request: Request) -> bool:
    return runtime.settings.environment == "production" or request.url.scheme == "https"


async def optional_session(
    request: Request, response: Response, runtime: RuntimeDep, session: SessionDep
) -> UiUser | None:
    """Whoever is signed in, whatever the role, or None without a live session."""
    signed = request.cookies.get(sessions.SESSION_COOKIE)
    token = runtime.signer.unsign(signed) if signed else None
    row = await sessions.load_session(session, token, utcnow()) if token else None
    if row is None or token is None:
        return None
    state = await runtime.limiter.hit("ui", "session:" + row.token_hash[:16])
    if state is not None:
        response.headers.update(state.headers())
    client = await session.get(GatewayClient, row.client_id) if row.client_id else None
    person = await session.get(User, row.user_id) if row.user_id else None  # loaded already
    user = UiUser(
        token=token,
        csrf_token=row.csrf_token,
        login_method=row.login_method,
        client_id=row.client_id,
        client_name=client.name if client else None,
        user_id=row.user_id,
        user_name=(person.display_name or person.email) if person else None,
    )
    request.state.ui_user = user  # error pages show the navigation that fits the role
    return user


OptionalSessionDep = Annotated[UiUser | None, Depends(optional_session)]


async def signed_in(user: OptionalSessionDep) -> UiUser:
    """Anyone signed in; a request without a live session goes to the login page."""
    if user is None:
        raise LoginRequired("Log in to use the admin UI")
    return user


SignedInDep = Annotated[UiUser, Depends(signed_in)]


def _admit(user: UiUser, *roles: str) -> UiUser:
    """``user`` when its role may use the page, else a 403 saying who may."""
    if user.role not in roles:
        allowed = " and ".join(_AUDIENCES[role] for role in roles)
        raise Forbidden(
            f"This page is for {allowed}; you are signed in as {_ROLE_NAMES[user.role]}",
            code="admin_only" if roles == (ADMIN,) else "role_refused",
        )
    return user


async def optional_viewer(user: OptionalSessionDep) -> UiUser | None:
    """The signed-in admin or client, or None without a live session."""
    return None if user is None else _admit(user, ADMIN, CLIENT)


async def current_viewer(user: SignedInDep) -> UiUser:
    """An admin or a gateway client."""
    return _admit(user, ADMIN, CLIENT)


async def current_user(user: SignedInDep) -> UiUser:
    """An admin; a gateway client's or a watch user's session is refused, whatever the page."""
    return _admit(user, ADMIN)


async def watch_viewer(user: SignedInDep) -> UiUser:
    """An admin (everyone's watch data, read-only) or a watch user (their own)."""
    return _admit(user, ADMIN, USER)


async def watcher(user: SignedInDep) -> UiUser:
    """A watch user, changing their own rules and preferences."""
    return _admit(user, USER)


OptionalViewerDep = Annotated[UiUser | None, Depends(optional_viewer)]
ViewerDep = Annotated[UiUser, Depends(current_viewer)]
UiUserDep = Annotated[UiUser, Depends(current_user)]
WatchViewerDep = Annotated[UiUser, Depends(watch_viewer)]
WatcherDep = Annotated[UiUser, Depends(watcher)]


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


async def require_watcher_csrf(request: Request, user: WatcherDep) -> UiUser:
    return await _check_csrf(request, user)


async def require_signed_in_csrf(request: Request, user: SignedInDep) -> UiUser:
    return await _check_csrf(request, user)


CsrfUserDep = Annotated[UiUser, Depends(require_csrf)]
CsrfViewerDep = Annotated[UiUser, Depends(require_viewer_csrf)]
CsrfWatcherDep = Annotated[UiUser, Depends(require_watcher_csrf)]
CsrfSignedInDep = Annotated[UiUser, Depends(require_signed_in_csrf)]


def set_login_csrf(runtime: Runtime, request: Request, response: Response, token: str) -> None:
    """Pair the login form's token with a signed cookie (double submit: no session yet)."""
    response.set_cookie(
        sessions.LOGIN_CSRF_COOKIE,
        runtime.signer.sign(token),
        httponly=True,
        samesite="strict",
        secure=secure_cookies(runtime, request),
        path="/",  # read by /ui/login, /ui/login/client, /ui/login/user, /client/login
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


@functools.cache
def _decoy_hash() -> str:
    """A hash to check an unknown email's password against, so it takes argon2's time too."""
    return hash_password(secrets.token_urlsafe(16))


async def authenticate_user(session: AsyncSession, email: str, password: str) -> User | None:
    """The user whose email and password these are (active or not); None otherwise."""
    user = await session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None or not user.password_hash:
        await verify_password_async(await asyncio.to_thread(_decoy_hash), password)
        return None
    return user if await verify_password_async(user.password_hash, password) else None


async def start_session(
    runtime: Runtime,
    request: Request,
    session: SessionDep,
    response: Response,
    method: str,
    principal: Principal | None,
    client_id: int | None = None,
    user_id: int | None = None,
) -> None:
    token, _ = await sessions.open_session(
        session,
        method=method,
        api_key_id=principal.key_id if principal else None,
        client_id=client_id,
        user_id=user_id,
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
