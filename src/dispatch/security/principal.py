"""Who is calling: an environment key, a stored API key or an admin UI session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dispatch.security.scopes import Scope

PrincipalKind = Literal["env", "key", "session"]


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    identity: str  # stable id used for rate limits and logs; never a secret
    name: str
    scopes: frozenset[Scope]
    key_id: int | None = None

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes
