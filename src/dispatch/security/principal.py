"""Who is calling: a key from the environment or a stored API key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dispatch.security.scopes import Scope

PrincipalKind = Literal["env", "key"]


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    identity: str  # stable id used for rate limits and logs; never a secret
    name: str
    scopes: frozenset[Scope]
    key_id: int | None = None

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes
