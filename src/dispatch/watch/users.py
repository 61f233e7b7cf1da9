"""Users: creation by an admin or by self-registration, profiles, deactivation, personal keys."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.errors import Conflict, Forbidden, NotFound, ValidationFailed
from dispatch.models import ApiKey, DeletedSubject, User, WatchAccountLink, WatchRule
from dispatch.security import api_keys
from dispatch.security.passwords import hash_password_async, verify_password_async
from dispatch.security.users import normalise_email
from dispatch.watch import webhooks
from dispatch.watch.schemas import (
    Integration,
    MePatch,
    PersonalKeyCreated,
    PersonalKeyOut,
    Preferences,
    PreferencesPatch,
    UserOut,
    UserPatch,
)


def preferences_of(user: User) -> Preferences:
    """The stored preferences over the defaults (stored values were validated on the way in)."""
    return Preferences.model_validate({**Preferences().model_dump(), **(user.preferences or {})})


def merged_preferences(user: User, patch: PreferencesPatch) -> dict[str, Any]:
    """The user's preferences with ``patch`` applied, validated as a whole."""
    changes = patch.model_dump(exclude_unset=True)
    merged = {**preferences_of(user).model_dump(), **changes}
    try:
        return Preferences.model_validate(merged).model_dump()
    except ValueError as exc:
        raise ValidationFailed(f"Invalid preferences: {exc}") from exc


async def user_out(session: AsyncSession, user: User) -> UserOut:
    """Seed 003's profile: the user, their preferences and rule counts per source."""
    queries = await session.scalars(select(WatchRule.query).where(WatchRule.user_id == user.id))
    counts: Counter[str] = Counter()
    for query in queries:
        counts.update(set(query.get("sources") or []))
    linked = set(
        await session.scalars(
            select(WatchAccountLink.provider).where(WatchAccountLink.user_id == user.id)
        )
    )
    for provider in linked:
        counts.setdefault(provider, 0)
    return UserOut(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        is_active=user.is_active,
        is_admin=user.is_admin,
        preferences=preferences_of(user),
        integrations=[
            Integration(provider=name, linked=name in linked, watch_rule_count=count)
            for name, count in sorted(counts.items())
        ],
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str | None,
    display_name: str | None = None,
    is_admin: bool = False,
    preferences: PreferencesPatch | None = None,
) -> User:
    now = utcnow()
    user = User(
        email=normalise_email(email),
        password_hash=await hash_password_async(password) if password else None,
        display_name=display_name,
        is_admin=is_admin,
        is_active=True,
        preferences={},
        created_at=now,
        updated_at=now,
    )
    if preferences is not None:
        user.preferences = merged_preferences(user, preferences)
    try:
        async with session.begin_nested():
            session.add(user)
    except IntegrityError as exc:
        raise Conflict("A user with this email already exists") from exc
    urls = preferences_of(user).webhook_urls
    if urls:  # created with webhook URLs: their endpoint exists from the start, as after /me
        await webhooks.configure(session, user, urls, now)
    return user


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist")
    return user


async def list_users(session: AsyncSession, limit: int, offset: int) -> Sequence[User]:
    query = select(User).order_by(User.id).limit(limit).offset(offset)
    return (await session.scalars(query)).all()


async def _set_email(session: AsyncSession, user: User, email: str) -> None:
    email = normalise_email(email)
    taken = await session.scalar(select(User.id).where(User.email == email, User.id != user.id))
    if taken is not None:
        raise Conflict("A user with this email already exists")
    user.email = email


async def update_user(session: AsyncSession, user: User, patch: UserPatch) -> User:
    """An admin's edit: email, password, name, active and admin flags."""
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("email"):
        await _set_email(session, user, changes["email"])
    if changes.get("password"):
        user.password_hash = await hash_password_async(changes["password"])
    if "display_name" in changes:
        user.display_name = changes["display_name"]
    if changes.get("is_admin") is not None:
        user.is_admin = changes["is_admin"]
    if changes.get("is_active") is False and user.is_active:
        await deactivate(session, user)
    elif changes.get("is_active") is True:
        user.is_active, user.deactivated_at = True, None
    user.updated_at = utcnow()
    return user


async def update_me(session: AsyncSession, user: User, patch: MePatch) -> User:
    """The user's own edit; a new password needs the current one when there is one."""
    changes = patch.model_dump(exclude_unset=True)
    if "display_name" in changes:
        user.display_name = changes["display_name"]
    if patch.preferences is not None:
        before = preferences_of(user).webhook_urls
        user.preferences = merged_preferences(user, patch.preferences)
        urls = preferences_of(user).webhook_urls
        if urls != before:
            await webhooks.configure(session, user, urls, utcnow())
    if patch.password:
        if user.password_hash and not await verify_password_async(
            user.password_hash, patch.current_password or ""
        ):
            raise Forbidden("current_password does not match")
        user.password_hash = await hash_password_async(patch.password)
    user.updated_at = utcnow()
    return user


async def deactivate(session: AsyncSession, user: User) -> None:
    """Seed 003's DELETE /me: the account is kept but inactive, and its rules stop."""
    now = utcnow()
    user.is_active, user.deactivated_at, user.updated_at = False, now, now
    await session.execute(
        update(WatchRule)
        .where(WatchRule.user_id == user.id, WatchRule.is_active.is_(True))
        .values(is_active=False, updated_at=now)
    )


async def hard_delete(session: AsyncSession, user: User) -> None:
    """Remove the user with their rules, events, notifications, keys and webhook endpoint."""
    await webhooks.remove(session, user.id)
    if user.external_sub:
        session.add(DeletedSubject(external_sub=user.external_sub, deleted_at=utcnow()))
    await session.delete(user)


def logout(user: User) -> datetime:
    """Refuse the user's bearer tokens issued until now (seed 003 only returned a marker)."""
    now = utcnow()
    user.tokens_valid_after = now
    user.updated_at = now
    return now


def key_out(record: ApiKey) -> PersonalKeyOut:
    assert record.user_id is not None
    return PersonalKeyOut(
        id=record.id,
        name=record.name,
        prefix=record.prefix,
        user_id=record.user_id,
        created_at=record.created_at,
        expires_at=record.expires_at,
        last_used_at=record.last_used_at,
        revoked_at=record.revoked_at,
    )


async def create_personal_key(
    session: AsyncSession, user: User, name: str, expires_at: datetime | None
) -> PersonalKeyCreated:
    if not user.is_active:
        raise Forbidden("User account is inactive")
    record, plaintext = await api_keys.create_key(
        session, name, [], expires_at=expires_at, user_id=user.id
    )
    await session.flush()
    return PersonalKeyCreated(**key_out(record).model_dump(), key=plaintext)


async def revoke_personal_key(session: AsyncSession, user: User, key_id: int) -> PersonalKeyOut:
    record = await session.get(ApiKey, key_id)
    if record is None or record.user_id != user.id:
        raise NotFound(f"Key {key_id} does not exist")
    record = await api_keys.revoke_key(session, key_id)
    return key_out(record)


async def count_users(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)
