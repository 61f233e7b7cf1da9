"""API keys: generation, hashing, lookup in constant time, revocation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.errors import NotFound
from dispatch.models import ApiKey
from dispatch.security.principal import Principal
from dispatch.security.scopes import ALL_SCOPES, SCOPE_VALUES, Scope

KEY_PREFIX = "dsp_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8


def generate_token(prefix: str) -> str:
    """A recognisable secret: ``prefix`` and 43 URL-safe characters (256 random bits)."""
    return prefix + secrets.token_urlsafe(32)


def generate_key() -> str:
    """A new API key: ``dsp_`` and 43 URL-safe characters."""
    return generate_token(KEY_PREFIX)


def hash_key(key: str) -> str:
    """SHA-256 hex digest; keys are random, so a slow hash adds nothing."""
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def match_env_key(presented: str, env_digests: Iterable[bytes]) -> int | None:
    """Index of the environment key whose digest matches, compared in constant time."""
    digest = key_digest(presented)
    found: int | None = None
    for index, candidate in enumerate(env_digests):
        # Digests have one length, and every candidate is compared: no early exit to time.
        if hmac.compare_digest(digest, candidate) and found is None:
            found = index
    return found


def env_principal(index: int, is_master: bool) -> Principal:
    name = "MASTER_KEY" if is_master else f"API_KEYS[{index}]"
    return Principal(kind="env", identity=f"env:{name}", name=name, scopes=ALL_SCOPES)


async def create_key(
    session: AsyncSession,
    name: str,
    scopes: Sequence[Scope],
    expires_at: datetime | None = None,
    user_id: int | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key and return it with its plaintext, which is never stored."""
    ordered = sorted({Scope(scope) for scope in scopes})
    for _ in range(5):
        plaintext = generate_key()
        record = ApiKey(
            name=name,
            prefix=display_prefix(plaintext),
            key_hash=hash_key(plaintext),
            scopes=[str(scope) for scope in ordered],
            expires_at=expires_at,
            user_id=user_id,
        )
        try:
            async with session.begin_nested():
                session.add(record)
        except IntegrityError:  # a prefix collision: astronomically rare, try again
            continue
        return record, plaintext
    raise RuntimeError("could not generate a unique key prefix")


async def list_keys(
    session: AsyncSession, include_revoked: bool = False, user_id: int | None = None
) -> Sequence[ApiKey]:
    """Keys by id; only one user's personal keys when ``user_id`` is given."""
    query = select(ApiKey).order_by(ApiKey.id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return (await session.scalars(query)).all()


async def get_key(session: AsyncSession, key_id: int) -> ApiKey:
    record = await session.get(ApiKey, key_id)
    if record is None:
        raise NotFound(f"API key {key_id} does not exist")
    return record


async def revoke_key(session: AsyncSession, key_id: int) -> ApiKey:
    """Revoke a key; revoking twice keeps the first revocation time."""
    record = await get_key(session, key_id)
    if record.revoked_at is None:
        record.revoked_at = utcnow()
    return record


async def find_usable_key(session: AsyncSession, presented: str) -> ApiKey | None:
    """The stored key matching ``presented`` if it exists, is not revoked and not expired."""
    if not presented.startswith(KEY_PREFIX) or len(presented) < PREFIX_LENGTH + 8:
        return None
    record = await session.scalar(select(ApiKey).where(ApiKey.prefix == display_prefix(presented)))
    if record is None or not hmac.compare_digest(record.key_hash, hash_key(presented)):
        return None
    return record if record.is_usable(utcnow()) else None


def key_principal(record: ApiKey) -> Principal:
    scopes = frozenset(Scope(scope) for scope in record.scopes if scope in SCOPE_VALUES)
    return Principal(
        kind="key",
        identity=f"key:{record.id}",
        name=record.name,
        scopes=scopes,
        key_id=record.id,
    )
