"""Permission scopes carried by API keys. ``admin`` implies every other scope."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    ADMIN = "admin"
    READ = "read"
    WRITE = "write"
    METRICS = "metrics"
    NODES = "nodes"  # may register remote nodes (each then acts with its own token)


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)
SCOPE_VALUES: frozenset[str] = frozenset(scope.value for scope in Scope)
