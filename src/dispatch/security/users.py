"""Users as callers: personal keys and bearer JWTs resolved to a user principal.

A user principal carries no scope: the admin routes of the other domains refuse it,
and the watch routes let it act on its own rules, events and notifications only.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.errors import Forbidden, Unauthorized
from dispatch.models import DeletedSubject, User
from dispatch.security.jwt_auth import Identity
from dispatch.security.principal import Principal


def normalise_email(email: str) -> str:
    return email.strip().lower()


def user_principal(user: User, *, key_id: int | None = None, admin: bool = False) -> Principal:
    """The principal of an active user; an inactive one is refused (seed 003: 403)."""
    if not user.is_active:
        raise Forbidden("User account is inactive")
    return Principal(
        kind="user",
        identity=f"user:{user.id}",
        name=user.email,
        scopes=frozenset(),
        key_id=key_id,
        user_id=user.id,
        user_admin=user.is_admin or admin,
    )


async def user_for_identity(
    session: AsyncSession, identity: Identity, *, auto_create: bool
) -> User:
    """The user a verified JWT names, provisioned on first sight when that is enabled."""
    user = await session.scalar(select(User).where(User.external_sub == identity.subject))
    if user is None:
        if not auto_create:
            raise Unauthorized("No user is provisioned for this token's subject")
        if await session.get(DeletedSubject, identity.subject) is not None:
            raise Unauthorized("The account of this token's subject was deleted")
        user = await _provision(session, identity)
    if user.tokens_valid_after is not None and identity.issued_at is not None:
        issued = datetime.fromtimestamp(identity.issued_at, UTC)
        if issued < user.tokens_valid_after:
            raise Unauthorized("Bearer token was issued before the user logged out")
    return user


async def _provision(session: AsyncSession, identity: Identity) -> User:
    # The token's email when it has one nobody uses yet; else a placeholder on a reserved
    # domain (seed 003 used dev+<uuid>@waxwatch.dev) that the user can change.
    email = identity.email
    if email is None or await session.scalar(select(User.id).where(User.email == email)):
        email = f"sub+{identity.subject}@users.invalid"
    now = utcnow()
    user = User(
        email=email[:320],
        external_sub=identity.subject,
        preferences={},
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(user)
    except IntegrityError:  # the same subject's first two requests raced: take the winner
        found = await session.scalar(select(User).where(User.external_sub == identity.subject))
        if found is None:
            raise
        return found
    return user
