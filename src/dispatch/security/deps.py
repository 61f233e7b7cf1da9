"""Authentication and rate-limit dependencies for API routes.

A key is read from ``X-Dispatch-Key`` (seed 000), ``X-API-Token`` or
``Authorization: Bearer``: an environment key, a stored API key (a personal key acts
as its user), or, when an identity provider is configured, a user's bearer JWT. The
limiter counts every call, valid key or not: a known key is budgeted by its id, anything
else by the client address, so guessing keys is throttled too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep
from dispatch.errors import AppError, Forbidden, Unauthorized
from dispatch.models import User
from dispatch.runtime import Runtime
from dispatch.security import api_keys, users
from dispatch.security.jwt_auth import looks_like_jwt
from dispatch.security.principal import Principal
from dispatch.security.ratelimit import client_ip
from dispatch.security.scopes import Scope

_dispatch_key = APIKeyHeader(
    name="X-Dispatch-Key",
    scheme_name="DispatchKey",
    auto_error=False,
    description="Dispatch API key (seed 000 header)",
)
_api_token = APIKeyHeader(
    name="X-API-Token", scheme_name="ApiToken", auto_error=False, description="Dispatch API key"
)
_bearer = HTTPBearer(
    scheme_name="Bearer", auto_error=False, description="Dispatch API key as a bearer token"
)


async def presented_key(
    dispatch_key: Annotated[str | None, Depends(_dispatch_key)],
    api_token: Annotated[str | None, Depends(_api_token)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """The key the caller sent, from the first header that carries one."""
    for value in (dispatch_key, api_token, bearer.credentials if bearer else None):
        if value and value.strip():
            return value.strip()
    return None


async def resolve_principal(runtime: Runtime, key: str) -> Principal | None:
    """The principal a key stands for, or None when it is unknown, expired or revoked.

    Raises Unauthorized or Forbidden with a reason for a bad JWT or an inactive user,
    and ServiceUnavailable when the identity provider's keys cannot be fetched.
    """
    digests = runtime.settings.env_key_digests
    index = api_keys.match_env_key(key, digests)
    if index is not None:
        is_master = runtime.settings.master_key is not None and index == len(digests) - 1
        return api_keys.env_principal(index, is_master)
    if runtime.jwt is not None and looks_like_jwt(key):
        return await _jwt_principal(runtime, key)
    # A short read of its own: environment keys need no connection at all, and the
    # request's session (a write transaction on SQLite for POSTs) is left to the route.
    async with runtime.database.session(write=False) as session:
        record = await api_keys.find_usable_key(session, key)
        owner = await session.get(User, record.user_id) if record and record.user_id else None
    if record is None:
        return None
    runtime.key_usage.record(record.id, utcnow())
    if record.user_id is not None:
        if owner is None:
            return None
        return users.user_principal(owner, key_id=record.id)
    return api_keys.key_principal(record)


async def _jwt_principal(runtime: Runtime, token: str) -> Principal:
    assert runtime.jwt is not None
    identity = await runtime.jwt.verify(token)
    provision = runtime.settings.auth_auto_create_users
    async with runtime.database.session(write=provision) as session:
        user = await users.user_for_identity(session, identity, auto_create=provision)
        return users.user_principal(user, admin=identity.is_admin)


class Authorize:
    """Dependency: a valid key carrying ``scope`` (any valid key for None), within budget.

    With ``users`` a user (personal key or JWT) passes too: the route then shows the user
    their own share of what the scope would show (seed 003's "own" routes).
    """

    def __init__(self, scope: Scope | None, group: str = "api", *, users: bool = False) -> None:
        self.scope = scope
        self.group = group
        self.users = users

    async def __call__(
        self,
        request: Request,
        response: Response,
        runtime: RuntimeDep,
        key: Annotated[str | None, Depends(presented_key)],
    ) -> Principal:
        refused: AppError | None = None
        try:
            principal = await resolve_principal(runtime, key) if key else None
        except (Unauthorized, Forbidden) as exc:  # counted against the address below
            principal, refused = None, exc
        request.state.principal = principal
        identity = (
            principal.identity if principal else "ip:" + client_ip(request, runtime.limiter.trusted)
        )
        state = await runtime.limiter.hit(self.group, identity)
        limit_headers = state.headers() if state is not None else {}
        response.headers.update(limit_headers)
        if refused is not None:
            raise refused
        if principal is None:
            message = (
                "Invalid, expired or revoked API key" if key else "A valid API key is required"
            )
            raise Unauthorized(message, headers=limit_headers)
        if self.users and principal.user_id is not None:
            return principal
        if self.scope is not None and not principal.allows(self.scope):
            raise Forbidden(
                f"This key lacks the '{self.scope}' scope",
                details={"required_scope": str(self.scope), "scopes": sorted(principal.scopes)},
                headers=limit_headers,
            )
        return principal


async def limit_anonymous(request: Request, response: Response, runtime: RuntimeDep) -> None:
    """Rate limit for public routes, budgeted by client address."""
    state = await runtime.limiter.hit("public", "ip:" + client_ip(request, runtime.limiter.trusted))
    if state is not None:
        response.headers.update(state.headers())


AnyKey = Annotated[Principal, Depends(Authorize(None))]
AdminKey = Annotated[Principal, Depends(Authorize(Scope.ADMIN))]
ReadKey = Annotated[Principal, Depends(Authorize(Scope.READ))]
ReadKeyOrUser = Annotated[Principal, Depends(Authorize(Scope.READ, users=True))]
WriteKey = Annotated[Principal, Depends(Authorize(Scope.WRITE))]
MetricsKey = Annotated[Principal, Depends(Authorize(Scope.METRICS, group="metrics"))]
