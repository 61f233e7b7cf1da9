"""How secrets are shown back: never in full."""

from __future__ import annotations

MASK = "••••"


def mask_value(value: str) -> str:
    """The first four characters of a long secret, never the rest."""
    return value[:4] + MASK if len(value) > 12 else MASK
