"""Admin UI sessions and CSRF tokens.

The session cookie holds a signed random token, never a password, a key or a
client token (seed 002 stored the admin password or the client's API token
itself). The server keeps the token's hash, so logout, expiry, revoking the key
that opened a session, deactivating or re-keying the gateway client that opened
one, and deactivating or logging out (``tokens_valid_after``) the watch user who
opened one end it everywhere. Every form carries the session's CSRF token; the
login forms, which have no session yet, use a signed double-submit cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.models import AdminSession, ApiKey, GatewayClient, User

SESSION_COOKIE = "dispatch_session"
LOGIN_CSRF_COOKIE = "dispatch_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def session_secret(settings: Settings) -> str:
    """SECRET_KEY, else a secret derived from MASTER_KEY, else a per-process random one."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    if settings.master_key is not None:
        material = settings.master_key.get_secret_value().encode()
        return hmac.new(material, b"dispatch-session-secret", hashlib.sha256).hexdigest()
    return secrets.token_hex(32)


class SessionSigner:
    """Signs cookie values with the session secret; checks age on the way back."""

    def __init__(self, secret: str, max_age_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="dispatch-admin")
        self.max_age_seconds = max_age_seconds

    def sign(self, value: str) -> str:
        return self._serializer.dumps(value)

    def unsign(self, signed: str) -> str | None:
        try:
            value = self._serializer.loads(signed, max_age=self.max_age_seconds)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_match(expected: str | None, presented: str | None) -> bool:
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


async def open_session(
    session: AsyncSession,
    *,
    method: str,
    api_key_id: int | None,
    client_ip: str | None,
    max_age_seconds: int,
    client_id: int | None = None,
    user_id: int | None = None,
) -> tuple[str, AdminSession]:
    """Create a session row (a gateway client's with ``client_id``, a watch user's with
    ``user_id``); returns the raw token."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = AdminSession(
        token_hash=_token_hash(token),
        csrf_token=secrets.token_urlsafe(32),
        login_method=method,
        api_key_id=api_key_id,
        client_id=client_id,
        user_id=user_id,
        created_at=now,
        expires_at=now + timedelta(seconds=max_age_seconds),
        client_ip=client_ip,
    )
    session.add(row)
    await session.flush()
    return token, row


async def load_session(session: AsyncSession, token: str, now: datetime) -> AdminSession | None:
    """The live session for ``token``; it dies with the key, client token or user that opened it."""
    row = await session.get(AdminSession, _token_hash(token))
    if row is None or row.expires_at <= now:
        return None
    if row.api_key_id is not None:
        key = await session.get(ApiKey, row.api_key_id)
        if key is None or not key.is_usable(now):
            return None
    if row.client_id is not None:
        client = await session.get(GatewayClient, row.client_id)
        if client is None or not client.is_active:
            return None
        rotated = client.token_rotated_at
        if rotated is not None and rotated >= row.created_at:
            return None  # opened with the token that rotation replaced
    if row.user_id is not None:
        user = await session.get(User, row.user_id)
        if user is None or not user.is_active:
            return None
        cutoff = user.tokens_valid_after
        if cutoff is not None and cutoff >= row.created_at:
            return None  # the user logged out everywhere after this session began
    return row


async def close_session(session: AsyncSession, token: str) -> None:
    await session.execute(delete(AdminSession).where(AdminSession.token_hash == _token_hash(token)))


async def prune_expired(session: AsyncSession, now: datetime, batch: int = 500) -> int:
    """Delete up to ``batch`` expired sessions; returns how many went."""
    expired = select(AdminSession.token_hash).where(AdminSession.expires_at <= now).limit(batch)
    hashes = list((await session.scalars(expired)).all())
    if hashes:
        await session.execute(delete(AdminSession).where(AdminSession.token_hash.in_(hashes)))
    return len(hashes)
