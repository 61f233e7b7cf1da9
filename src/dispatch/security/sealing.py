"""Secrets kept for users (their Discogs tokens), encrypted at rest.

A sealed value reads ``enc:v1:<kid>:<fernet token>`` (seed 003's format): the key id names
the key that sealed it, so keys rotate by putting a new one first in
``TOKEN_ENCRYPTION_KEYS`` while the older ones still open what they sealed. Without that
setting the key is derived from SECRET_KEY, else from MASTER_KEY (``dispatch serve``
always has one). Fernet is AES-128-CBC with an HMAC-SHA256, from ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from dispatch.config import Settings

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

PREFIX = "enc:v1:"


class Unreadable(ValueError):
    """A sealed value no configured key opens (the key was removed, or it was altered)."""


def _fernet(material: str) -> tuple[str, Fernet]:
    from cryptography.fernet import Fernet  # ~7 MB: loaded on a first seal or open

    digest = hashlib.sha256(b"dispatch-token-sealing\x00" + material.encode()).digest()
    kid = hashlib.sha256(digest).hexdigest()[:8]
    return kid, Fernet(base64.urlsafe_b64encode(digest))


class Sealer:
    """Seals with the first key, opens with any."""

    def __init__(self, materials: Sequence[str]) -> None:
        if not materials:
            raise ValueError("at least one key is needed")
        self._materials = tuple(materials)

    @cached_property
    def _keys(self) -> list[tuple[str, Fernet]]:
        return [_fernet(material) for material in self._materials]

    @cached_property
    def _by_kid(self) -> dict[str, Fernet]:
        return dict(reversed(self._keys))

    def seal(self, plaintext: str) -> str:
        kid, fernet = self._keys[0]
        return f"{PREFIX}{kid}:{fernet.encrypt(plaintext.encode()).decode()}"

    def open(self, sealed: str) -> str:
        if not sealed.startswith(PREFIX):
            raise Unreadable("not a sealed value")
        kid, _, token = sealed[len(PREFIX) :].partition(":")
        fernet = self._by_kid.get(kid)
        if fernet is None:
            raise Unreadable(f"no configured key has id {kid}")
        from cryptography.fernet import InvalidToken

        try:
            return fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise Unreadable("the value does not open with its key") from exc


def sealer_for(settings: Settings) -> Sealer | None:
    """The process's sealer, or None when no key material is configured at all."""
    materials = [key.get_secret_value() for key in settings.token_encryption_keys]
    for fallback in (settings.secret_key, settings.master_key):
        if fallback is not None and fallback.get_secret_value():
            materials.append(fallback.get_secret_value())
    materials = [material for material in materials if material]
    return Sealer(materials) if materials else None
