"""Who is calling: a key from the environment, a stored API key, or a user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dispatch.security.scopes import Scope

PrincipalKind = Literal["env", "key", "user"]


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    identity: str  # stable id used for rate limits and logs; never a secret
    name: str
    scopes: frozenset[Scope]
    key_id: int | None = None
    # A user (a personal key or a bearer JWT) acts on their own watch data only; an
    # admin user may also read everyone's (seed 003's admin variants).
    user_id: int | None = None
    user_admin: bool = False

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes
