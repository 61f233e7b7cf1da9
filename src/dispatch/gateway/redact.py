"""What the gateway shows back of secrets: header values, SMTP passwords, tokens."""

from __future__ import annotations

from collections.abc import Mapping

from dispatch.security.masking import MASK, mask_value

# A header whose name contains one of these carries a credential.
_SENSITIVE_PARTS = ("auth", "token", "key", "secret", "password", "cookie", "signature", "session")
RESPONSE_BODY_LIMIT = 16 * 1024


def is_sensitive(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _SENSITIVE_PARTS)


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as shown in the API, the UI and attempt logs: credentials masked."""
    return {
        name: mask_value(value) if is_sensitive(name) else value for name, value in headers.items()
    }


def merge_headers(stored: Mapping[str, str], incoming: Mapping[str, str]) -> dict[str, str]:
    """Headers from an edit: a masked value sent back unchanged keeps the stored secret."""
    merged: dict[str, str] = {}
    for name, value in incoming.items():
        if MASK in value and name in stored and mask_value(stored[name]) == value:
            merged[name] = stored[name]
        else:
            merged[name] = value
    return merged


def cap_text(data: bytes, limit: int = RESPONSE_BODY_LIMIT) -> str:
    """At most ``limit`` bytes of a response body as text (undecodable bytes replaced)."""
    return data[:limit].decode("utf-8", errors="replace")
