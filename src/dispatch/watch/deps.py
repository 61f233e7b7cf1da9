"""Who may call the watch routes: a user (personal key or bearer JWT) or an admin key.

A user sees and changes only their own rules, events and notifications; an admin key
sees everyone's (and names the user when it creates something for one). Other keys
(read, write, metrics) have no business with people's watch data and get a 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from dispatch.errors import Forbidden, ValidationFailed
from dispatch.security.deps import Authorize
from dispatch.security.principal import Principal
from dispatch.security.scopes import Scope


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    user_id: int | None  # None for an admin key

    @property
    def is_admin_key(self) -> bool:
        return self.principal.allows(Scope.ADMIN)

    @property
    def reads_all(self) -> bool:
        """An admin key, or an admin user on seed 003's admin-wide routes."""
        return self.is_admin_key or self.principal.user_admin

    def owner(self, requested: int | None) -> int | None:
        """Whose data a listing shows: the user's own, or (admin) the one asked for / all."""
        if self.user_id is not None:
            return self.user_id
        return requested

    def acting_for(self, requested: int | None) -> int:
        """The user something is created for: the caller, or the one an admin key names."""
        if self.user_id is not None:
            return self.user_id
        if requested is None:
            raise ValidationFailed(
                "user_id is required when an admin key acts for a user",
                details={"field": "user_id"},
            )
        return requested

    def may_see(self, owner_id: int) -> bool:
        return self.user_id is None or self.user_id == owner_id


def _caller(principal: Principal) -> Caller:
    if principal.user_id is not None:
        return Caller(principal, principal.user_id)
    if principal.allows(Scope.ADMIN):
        return Caller(principal, None)
    raise Forbidden(
        "Watch routes take a user's personal key or bearer token, or an admin key",
        details={"scopes": sorted(principal.scopes)},
    )


async def rules_caller(
    principal: Annotated[Principal, Depends(Authorize(None, group="watch_rules"))],
) -> Caller:
    return _caller(principal)


async def search_caller(
    principal: Annotated[Principal, Depends(Authorize(None, group="search"))],
) -> Caller:
    return _caller(principal)


async def stream_caller(
    principal: Annotated[Principal, Depends(Authorize(None, group="stream_events"))],
) -> Caller:
    return _caller(principal)


async def discogs_caller(
    principal: Annotated[Principal, Depends(Authorize(None, group="discogs"))],
) -> Caller:
    return _caller(principal)


async def oauth_caller(
    principal: Annotated[Principal, Depends(Authorize(None, group="auth_endpoints"))],
) -> Caller:
    return _caller(principal)


async def api_caller(principal: Annotated[Principal, Depends(Authorize(None))]) -> Caller:
    return _caller(principal)


RulesCaller = Annotated[Caller, Depends(rules_caller)]
StreamCaller = Annotated[Caller, Depends(stream_caller)]
SearchCaller = Annotated[Caller, Depends(search_caller)]
UserCaller = Annotated[Caller, Depends(api_caller)]
DiscogsCaller = Annotated[Caller, Depends(discogs_caller)]
OAuthCaller = Annotated[Caller, Depends(oauth_caller)]
