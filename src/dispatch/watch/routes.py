"""The watch API: users and profiles, watch rules, events and notifications (seed 003).

Seed 003's routes keep their shapes under ``/api/v1``. A user (personal key or bearer
JWT) reaches only their own data; an admin key reaches everyone's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import ERROR_RESPONSES, Forbidden, NotFound, ValidationFailed
from dispatch.models import User, WatchEvent, WatchNotification
from dispatch.runtime import Runtime
from dispatch.security import api_keys
from dispatch.security.deps import AdminKey
from dispatch.security.ratelimit import client_ip
from dispatch.watch import feed, rules, users, webhooks
from dispatch.watch.deps import Caller, RulesCaller, UserCaller
from dispatch.watch.pages import PageDep
from dispatch.watch.schemas import (
    EventOut,
    LogoutOut,
    MarkedRead,
    MePatch,
    NotificationOut,
    PersonalKeyCreate,
    PersonalKeyCreated,
    PersonalKeyOut,
    Registration,
    RuleQuery,
    SaveAlert,
    UnreadCount,
    UserCreate,
    UserOut,
    UserPatch,
    WatchRuleCreate,
    WatchRuleOut,
    WatchRulePatch,
    WebhookOut,
)

router = APIRouter(responses=ERROR_RESPONSES)
OwnerFilter = Annotated[int | None, Query(description="Admin keys: one user's items only")]


async def _enabled_sources(runtime: Runtime) -> list[str]:
    return [name for name, config in (await runtime.catalog.configs()).items() if config.enabled]


async def _me(session: SessionDep, caller: Caller) -> User:
    if caller.user_id is None:
        raise ValidationFailed(
            "An admin key has no profile of its own; use /api/v1/users/{id}",
            details={"hint": "/api/v1/users"},
        )
    return await users.get_user(session, caller.user_id)


# Users (admin) ---------------------------------------------------------------------------


@router.post("/users", tags=["users"], status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, session: SessionDep, _: AdminKey) -> UserOut:
    """Create a user with a password (argon2id); the user then logs in or gets keys."""
    user = await users.create_user(
        session,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        is_admin=body.is_admin,
        preferences=body.preferences,
    )
    await session.flush()
    return await users.user_out(session, user)


@router.get("/users", tags=["users"])
async def list_users(
    session: SessionDep,
    _: AdminKey,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[UserOut]:
    return [
        await users.user_out(session, u) for u in await users.list_users(session, limit, offset)
    ]


@router.get("/users/{user_id}", tags=["users"])
async def get_user(user_id: int, session: SessionDep, _: AdminKey) -> UserOut:
    return await users.user_out(session, await users.get_user(session, user_id))


@router.patch("/users/{user_id}", tags=["users"])
async def patch_user(user_id: int, body: UserPatch, session: SessionDep, _: AdminKey) -> UserOut:
    user = await users.update_user(session, await users.get_user(session, user_id), body)
    return await users.user_out(session, user)


@router.delete("/users/{user_id}", tags=["users"], status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(user_id: int, session: SessionDep, _: AdminKey) -> Response:
    await users.hard_delete(session, await users.get_user(session, user_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/users/{user_id}/keys", tags=["users"], status_code=status.HTTP_201_CREATED)
async def create_user_key(
    user_id: int, body: PersonalKeyCreate, session: SessionDep, _: AdminKey
) -> PersonalKeyCreated:
    """A personal API key for the user: it acts as the user, never beyond."""
    user = await users.get_user(session, user_id)
    return await users.create_personal_key(session, user, body.name, body.expires_at)


@router.get("/users/{user_id}/keys", tags=["users"])
async def list_user_keys(user_id: int, session: SessionDep, _: AdminKey) -> list[PersonalKeyOut]:
    await users.get_user(session, user_id)
    keys = await api_keys.list_keys(session, include_revoked=True, user_id=user_id)
    return [users.key_out(k) for k in keys]


class RegistrationOut(BaseModel):
    user: UserOut
    key: PersonalKeyCreated


@router.post("/register", tags=["users"], status_code=status.HTTP_201_CREATED)
async def register(
    body: Registration, request: Request, session: SessionDep, runtime: RuntimeDep
) -> RegistrationOut:
    """Self-registration (SELF_REGISTRATION=true): the new user and a first personal key."""
    await runtime.limiter.hit("login", "ip:" + client_ip(request, runtime.limiter.trusted))
    if not runtime.settings.self_registration:
        raise Forbidden("Self-registration is disabled on this server")
    user = await users.create_user(
        session, email=body.email, password=body.password, display_name=body.display_name
    )
    await session.flush()
    key = await users.create_personal_key(session, user, "registration", None)
    return RegistrationOut(user=await users.user_out(session, user), key=key)


# The caller's own profile (seed 003's /me) ------------------------------------------------


@router.get("/me", tags=["me"])
async def get_me(session: SessionDep, caller: UserCaller) -> UserOut:
    return await users.user_out(session, await _me(session, caller))


@router.patch("/me", tags=["me"])
async def patch_me(body: MePatch, session: SessionDep, caller: UserCaller) -> UserOut:
    user = await users.update_me(session, await _me(session, caller), body)
    return await users.user_out(session, user)


@router.delete("/me", tags=["me"])
async def deactivate_me(session: SessionDep, caller: UserCaller) -> UserOut:
    """Seed 003: deactivate the account and disable its rules (the data stays)."""
    user = await _me(session, caller)
    await users.deactivate(session, user)
    return await users.user_out(session, user)


@router.delete("/me/hard-delete", tags=["me"], status_code=status.HTTP_204_NO_CONTENT)
async def hard_delete_me(session: SessionDep, caller: UserCaller) -> Response:
    await users.hard_delete(session, await _me(session, caller))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/me/logout", tags=["me"])
async def logout(session: SessionDep, caller: UserCaller) -> LogoutOut:
    """Bearer tokens issued before now stop working (seed 003 only returned this marker)."""
    user = await _me(session, caller)
    moment = users.logout(user)
    return LogoutOut(user_id=user.id, logged_out_at=moment, invalidate_before=moment)


@router.get("/me/webhook", tags=["me"])
async def my_webhook(session: SessionDep, caller: UserCaller) -> WebhookOut:
    """Where the user's webhook alerts go (``preferences.webhook_urls``, in failover order)
    and the secret to verify their Standard Webhooks signatures with."""
    user = await _me(session, caller)
    enabled = users.preferences_of(user).notifications_webhook
    return WebhookOut.model_validate(await webhooks.describe(session, user, enabled))


@router.post("/me/keys", tags=["me"], status_code=status.HTTP_201_CREATED)
async def create_my_key(
    body: PersonalKeyCreate, session: SessionDep, caller: UserCaller
) -> PersonalKeyCreated:
    user = await _me(session, caller)
    return await users.create_personal_key(session, user, body.name, body.expires_at)


@router.get("/me/keys", tags=["me"])
async def list_my_keys(session: SessionDep, caller: UserCaller) -> list[PersonalKeyOut]:
    user = await _me(session, caller)
    keys = await api_keys.list_keys(session, include_revoked=True, user_id=user.id)
    return [users.key_out(k) for k in keys]


@router.delete("/me/keys/{key_id}", tags=["me"])
async def revoke_my_key(key_id: int, session: SessionDep, caller: UserCaller) -> PersonalKeyOut:
    return await users.revoke_personal_key(session, await _me(session, caller), key_id)


# Watch rules ------------------------------------------------------------------------------


@router.post("/watch-rules", tags=["watch rules"], status_code=status.HTTP_201_CREATED)
async def create_rule(
    body: WatchRuleCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: RulesCaller,
    user_id: OwnerFilter = None,
) -> WatchRuleOut:
    owner = caller.acting_for(user_id)
    rule = await rules.create_rule(session, owner, body, await _enabled_sources(runtime))
    return rules.rule_out(rule)


@router.get("/watch-rules", tags=["watch rules"])
async def list_rules(
    session: SessionDep,
    caller: RulesCaller,
    page: PageDep,
    response: Response,
    user_id: OwnerFilter = None,
    is_active: bool | None = None,
) -> list[WatchRuleOut]:
    found = await rules.list_rules(session, caller.owner(user_id), page, is_active)
    return [rules.rule_out(r) for r in page.trim(list(found), response)]


@router.get("/watch-rules/{rule_id}", tags=["watch rules"])
async def get_rule(rule_id: int, session: SessionDep, caller: RulesCaller) -> WatchRuleOut:
    return rules.rule_out(await rules.get_rule(session, caller, rule_id))


@router.patch("/watch-rules/{rule_id}", tags=["watch rules"])
async def patch_rule(
    rule_id: int,
    body: WatchRulePatch,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: RulesCaller,
) -> WatchRuleOut:
    rule = await rules.get_rule(session, caller, rule_id)
    enabled = await _enabled_sources(runtime)
    return rules.rule_out(await rules.update_rule(session, rule, body, enabled))


@router.post("/watch-rules/{rule_id}/disable", tags=["watch rules"])
async def disable_rule(rule_id: int, session: SessionDep, caller: RulesCaller) -> WatchRuleOut:
    rule = await rules.get_rule(session, caller, rule_id)
    return rules.rule_out(rules.disable_rule(session, rule))


@router.delete("/watch-rules/{rule_id}", tags=["watch rules"])
async def soft_delete_rule(rule_id: int, session: SessionDep, caller: RulesCaller) -> WatchRuleOut:
    """Seed 003's soft delete: the rule is disabled and returned."""
    rule = await rules.get_rule(session, caller, rule_id)
    return rules.rule_out(rules.disable_rule(session, rule, deleted=True))


@router.delete(
    "/watch-rules/{rule_id}/hard", tags=["watch rules"], status_code=status.HTTP_204_NO_CONTENT
)
async def hard_delete_rule(rule_id: int, session: SessionDep, caller: RulesCaller) -> Response:
    await rules.hard_delete_rule(session, await rules.get_rule(session, caller, rule_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/search/save-alert", tags=["watch rules"], status_code=status.HTTP_201_CREATED)
async def save_alert(
    body: SaveAlert,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: RulesCaller,
    user_id: OwnerFilter = None,
) -> WatchRuleOut:
    """Seed 003's "save this search as an alert": the search becomes a watch rule."""
    enabled = await _enabled_sources(runtime)
    create = _alert_rule(body, enabled)
    rule = await rules.create_rule(session, caller.acting_for(user_id), create, enabled)
    return rules.rule_out(rule)


def _alert_rule(body: SaveAlert, enabled: list[str]) -> WatchRuleCreate:
    """The rule a saved search becomes; a 422 when the search is no valid rule (an empty
    keyword or provider is fine to search with, not to watch)."""
    search = body.query
    try:
        query = RuleQuery(
            sources=search.providers or enabled,
            keywords=search.keywords or None,
            min_price=search.min_price,
            max_price=search.max_price,
            currency=search.currency,
            conditions=[search.min_condition] if search.min_condition else None,
        )
    except ValidationError as exc:
        raise ValidationFailed(
            "Invalid alert: its search cannot be watched",
            details={"errors": exc.errors(include_url=False, include_input=False)},
        ) from exc
    return WatchRuleCreate(
        name=body.name,
        query=query,
        poll_interval_seconds=body.poll_interval_seconds,
        notify_on=body.notify_on,
    )


# Events and the notification feed ---------------------------------------------------------


def _event_out(event: WatchEvent) -> EventOut:
    rule = event.payload.get("rule") or {}
    return EventOut(
        id=event.id,
        user_id=event.user_id,
        type=event.type,
        watch_release_id=event.rule_id if rule.get("kind") == "release" else None,
        rule_id=event.rule_id,
        listing_id=event.product_id,
        payload=event.payload,
        created_at=event.created_at,
    )


@router.get("/events", tags=["events"])
async def list_events(
    session: SessionDep,
    caller: UserCaller,
    page: PageDep,
    response: Response,
    user_id: OwnerFilter = None,
    rule_id: int | None = None,
    type: Annotated[str | None, Query(max_length=32)] = None,
) -> list[EventOut]:
    owner = caller.owner(user_id)
    found = await feed.events(session, owner, page, rule_id=rule_id, kind=type)
    return [_event_out(e) for e in page.trim(list(found), response)]


def _notification_out(row: WatchNotification) -> NotificationOut:
    return NotificationOut.model_validate(row, from_attributes=True)


@router.get("/notifications", tags=["notifications"])
async def list_notifications(
    session: SessionDep,
    caller: UserCaller,
    page: PageDep,
    response: Response,
    user_id: OwnerFilter = None,
    unread: bool | None = None,
    channel: Annotated[str | None, Query(pattern="^(realtime|email|webhook)$")] = None,
) -> list[NotificationOut]:
    query = select(WatchNotification)
    owner = caller.owner(user_id)
    if owner is not None:
        query = query.where(WatchNotification.user_id == owner)
    if unread is not None:
        query = query.where(WatchNotification.is_read.is_(not unread))
    if channel is not None:
        query = query.where(WatchNotification.channel == channel)
    query = page.apply(query, WatchNotification.created_at, WatchNotification.id)
    found = (await session.scalars(query)).all()
    return [_notification_out(n) for n in page.trim(list(found), response)]


@router.get("/notifications/unread-count", tags=["notifications"])
async def unread_count(
    session: SessionDep, caller: UserCaller, user_id: OwnerFilter = None
) -> UnreadCount:
    """Unread items of the in-app feed (the ``realtime`` channel)."""
    return UnreadCount(unread_count=await feed.unread_count(session, caller.owner(user_id)))


@router.post("/notifications/read-all", tags=["notifications"])
async def mark_all_read(
    session: SessionDep, caller: UserCaller, user_id: OwnerFilter = None
) -> MarkedRead:
    owner = caller.owner(user_id)
    if owner is None:
        raise ValidationFailed("user_id is required when an admin key marks notifications read")
    return MarkedRead(marked=await feed.mark_all_read(session, owner))


@router.post("/notifications/{notification_id}/read", tags=["notifications"])
async def mark_read(
    notification_id: int, session: SessionDep, caller: UserCaller
) -> NotificationOut:
    row = await session.get(WatchNotification, notification_id)
    if row is None or not caller.may_see(row.user_id):
        raise NotFound(f"Notification {notification_id} does not exist")
    if not row.is_read:
        row.is_read, row.read_at = True, utcnow()
    return _notification_out(row)
