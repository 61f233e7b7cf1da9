"""The watch pages under ``/ui/watch``: a watch user's dashboard with live notifications,
their rules (create, edit, enable or disable, delete) and what each matched, their events
and notification feed, and their preferences. An admin reads everyone's, and the users.

The pages call the services the JSON API calls (``dispatch.watch.routes``) with the
session's user as the owner, so another user's rule is simply not found. The live panel
follows ``/ui/watch/stream``: the API's stream (``watch.live``) for the UI session, since
a browser's EventSource cannot send the API's key headers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import NotFound, ValidationFailed
from dispatch.models import (
    CatalogProduct,
    User,
    WatchEvent,
    WatchMatch,
    WatchNotification,
    WatchRule,
)
from dispatch.runtime import Runtime
from dispatch.security import sessions
from dispatch.security.principal import Principal
from dispatch.security.scopes import Scope
from dispatch.watch import feed, live, rules, users, webhooks
from dispatch.watch.deps import Caller
from dispatch.watch.pages import Page, decode_cursor, encode_cursor
from dispatch.watch.schemas import WatchRuleOut, WatchRulePatch
from dispatch.web import watch_discogs
from dispatch.web import watch_forms as forms
from dispatch.web.auth import (
    CsrfWatcherDep,
    UiUser,
    UiUserDep,
    WatcherDep,
    WatchViewerDep,
)
from dispatch.web.catalog_forms import money, web_link
from dispatch.web.gateway_forms import FormInvalid, Values, refusal
from dispatch.web.pages import page

router = APIRouter(prefix="/ui/watch", include_in_schema=False)

PAGE_SIZE = 50
RECENT = 10
USERS_SHOWN = 200
CursorParam = Annotated[str | None, Query(max_length=500)]
OwnerParam = Annotated[int | None, Query(alias="user", description="Admins: one user's only")]
Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class RuleRow:
    """A rule as the lists show it: with how many listings it matches, and (admins) whose."""

    rule: WatchRuleOut
    matches: int
    owner: str | None
    summary: str


def _caller(user: UiUser) -> Caller:
    """The watch services' caller for a UI session: the user, or an admin who sees all."""
    if user.user_id is None:
        admin = Principal(
            kind="env", identity="ui:admin", name="ui", scopes=frozenset({Scope.ADMIN})
        )
        return Caller(admin, None)
    identity = f"user:{user.user_id}"
    person = Principal(
        kind="user", identity=identity, name="ui", scopes=frozenset(), user_id=user.user_id
    )
    return Caller(person, user.user_id)


def _render(
    request: Request, user: UiUser, name: str, context: dict[str, Any], status: int = 200
) -> Response:
    helpers = {"user": user, "money": money, "link": web_link}
    return page(request, f"watch/{name}", helpers | context, status)


def _page(cursor: str | None, limit: int = PAGE_SIZE) -> Page:
    return Page(limit, 0, decode_cursor(cursor) if cursor else None)


def _cut(
    request: Request, rows: Sequence[Row], stamp: Callable[[Row], tuple[datetime, int]]
) -> tuple[list[Row], str | None]:
    """A page's rows (read one past the page) and the link to the older ones, if any."""
    if len(rows) <= PAGE_SIZE:
        return list(rows), None
    params = dict(request.query_params) | {"cursor": encode_cursor(*stamp(rows[PAGE_SIZE - 1]))}
    return list(rows[:PAGE_SIZE]), f"{request.url.path}?{urlencode(params)}"


async def _enabled_sources(runtime: Runtime) -> list[str]:
    return [name for name, config in (await runtime.catalog.configs()).items() if config.enabled]


# Reads the API's routes make too, for a session's owner (None: everyone's) -----------------


async def _rule_rows(
    session: AsyncSession, found: Sequence[WatchRule], admin: bool
) -> list[RuleRow]:
    ids = [rule.id for rule in found]
    counts = select(WatchMatch.rule_id, func.count()).where(WatchMatch.rule_id.in_(ids))
    matches = dict((await session.execute(counts.group_by(WatchMatch.rule_id))).all())
    emails: dict[int, str] = {}
    if admin and found:
        owners = select(User.id, User.email).where(User.id.in_({r.user_id for r in found}))
        emails = dict((await session.execute(owners)).all())
    return [
        RuleRow(
            rule=rules.rule_out(rule),
            matches=matches.get(rule.id, 0),
            owner=emails.get(rule.user_id),
            summary=forms.query_summary(rule.query),
        )
        for rule in found
    ]


async def _feed(
    session: AsyncSession, owner: int | None, page: Page
) -> list[tuple[WatchNotification, WatchEvent]]:
    """The in-app feed (the ``realtime`` channel), each notification with its event."""
    query = select(WatchNotification).where(WatchNotification.channel == "realtime")
    if owner is not None:
        query = query.where(WatchNotification.user_id == owner)
    query = page.apply(query, WatchNotification.created_at, WatchNotification.id)
    found = list(await session.scalars(query))
    ids = {notification.event_id for notification in found}
    events = {
        e.id: e for e in await session.scalars(select(WatchEvent).where(WatchEvent.id.in_(ids)))
    }
    return [(notification, events[notification.event_id]) for notification in found]


# Dashboard and the live stream -------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def dashboard(request: Request, session: SessionDep, user: WatchViewerDep) -> Response:
    """The user's rules, latest alerts and feed; the feed then follows the stream live."""
    owner = user.user_id
    found = await rules.list_rules(session, owner, _page(None), None)
    recent = _page(None, RECENT)
    items = (await _feed(session, owner, recent))[:RECENT]
    alerts = (await feed.events(session, owner, recent, alerts_only=True))[:RECENT]
    context = {
        "rules": await _rule_rows(session, found[:PAGE_SIZE], user.is_admin),
        "more_rules": len(found) > PAGE_SIZE,
        "events": [forms.event_view(e) for e in alerts],
        "feed": [forms.feed_item(n, e) for n, e in items],
        "unread": await feed.unread_count(session, owner),
        "after": max((n.id for n, _ in items), default=0),
    }
    return _render(request, user, "dashboard.html", context)


@router.get("/stream", response_class=StreamingResponse)
async def stream(
    runtime: RuntimeDep,
    user: WatchViewerDep,
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """The API's notification stream for this session: its user's, or everyone's (admin).

    ``after`` is the newest notification the page showed, so nothing that arrives between
    the page and the connection is lost; a reconnect's ``Last-Event-ID`` takes over.
    """
    resume = int(last_event_id) if last_event_id and last_event_id.isdigit() else after

    async def alive() -> bool:
        """The session still holds (a logout or an expiry ends the stream)."""
        async with runtime.database.session(write=False) as session:
            return await sessions.load_session(session, user.token, utcnow()) is not None

    return StreamingResponse(
        live.event_stream(runtime, user.user_id, resume, alive),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# Rules -------------------------------------------------------------------------------------


@router.get("/rules", response_class=HTMLResponse)
async def rules_page(
    request: Request,
    session: SessionDep,
    user: WatchViewerDep,
    cursor: CursorParam = None,
    owner: OwnerParam = None,
) -> Response:
    """The user's rules; an admin's list is everyone's, or one user's (``?user=``)."""
    found = await rules.list_rules(session, _caller(user).owner(owner), _page(cursor), None)
    shown, older = _cut(request, found, lambda r: (r.created_at, r.id))
    context = {"rules": await _rule_rows(session, shown, user.is_admin), "older": older}
    return _render(request, user, "rules.html", context | {"owner": owner})


async def _rule_form(
    request: Request,
    runtime: Runtime,
    user: UiUser,
    values: Values,
    exc: Exception | None = None,
) -> Response:
    errors, status = refusal(exc)
    context = {"v": values, "sources": await _enabled_sources(runtime), "errors": errors}
    return _render(request, user, "rule_form.html", context, status)


@router.get("/rules/new", response_class=HTMLResponse)
async def new_rule(request: Request, runtime: RuntimeDep, user: WatcherDep) -> Response:
    return await _rule_form(request, runtime, user, forms.new_rule_values())


@router.post("/rules", response_class=HTMLResponse)
async def create_rule(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: CsrfWatcherDep
) -> Response:
    values = forms.rule_values_from_form(await request.form())
    assert user.user_id is not None  # a watch user's session
    try:
        create = forms.rule_create(values)
        rule = await rules.create_rule(
            session, user.user_id, create, await _enabled_sources(runtime)
        )
    except (FormInvalid, ValidationFailed) as exc:
        return await _rule_form(request, runtime, user, values, exc)
    return RedirectResponse(f"/ui/watch/rules/{rule.id}?saved=1", status_code=303)


async def _rule_page(
    request: Request,
    session: AsyncSession,
    runtime: Runtime,
    user: UiUser,
    rule_id: int,
    *,
    values: Values | None = None,
    exc: Exception | None = None,
) -> Response:
    rule = await rules.get_rule(session, _caller(user), rule_id)
    (row,) = await _rule_rows(session, [rule], user.is_admin)
    matched = await session.execute(
        select(WatchMatch, CatalogProduct)
        .join(CatalogProduct, CatalogProduct.id == WatchMatch.product_id)
        .where(WatchMatch.rule_id == rule.id)
        .order_by(WatchMatch.last_matched_at.desc(), WatchMatch.id.desc())
        .limit(PAGE_SIZE)
    )
    events = await feed.events(session, user.user_id, _page(None, RECENT), rule_id=rule.id)
    enabled = await _enabled_sources(runtime)
    errors, status = refusal(exc)
    context = {
        "r": row,
        "matches": list(matched.all()),
        "events": [forms.event_view(e) for e in events[:RECENT]],
        "v": values or forms.rule_values(row.rule),
        "sources": sorted({*enabled, *row.rule.query.get("sources", [])}),
        "enabled": enabled,
        "errors": errors,
        "saved": request.query_params.get("saved") == "1",
    }
    return _render(request, user, "rule.html", context, status)


@router.get("/rules/{rule_id:int}", response_class=HTMLResponse)
async def rule_page(
    rule_id: int, request: Request, session: SessionDep, runtime: RuntimeDep, user: WatchViewerDep
) -> Response:
    return await _rule_page(request, session, runtime, user, rule_id)


@router.post("/rules/{rule_id:int}", response_class=HTMLResponse)
async def edit_rule(
    rule_id: int,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: CsrfWatcherDep,
) -> Response:
    rule = await rules.get_rule(session, _caller(user), rule_id)
    values = forms.rule_values_from_form(await request.form())
    try:
        patch = forms.rule_patch(values, rule.query)
        await rules.update_rule(session, rule, patch, await _enabled_sources(runtime))
    except (FormInvalid, ValidationFailed) as exc:
        return await _rule_page(request, session, runtime, user, rule_id, values=values, exc=exc)
    return RedirectResponse(f"/ui/watch/rules/{rule_id}?saved=1", status_code=303)


def _back(back: str, rule_id: int) -> str:
    """Where a rule's button returns to: the list, the dashboard or the rule's page."""
    targets = {"list": "/ui/watch/rules", "dashboard": "/ui/watch"}
    return targets.get(back, f"/ui/watch/rules/{rule_id}")


@router.post("/rules/{rule_id:int}/enable")
async def enable_rule(
    rule_id: int,
    session: SessionDep,
    runtime: RuntimeDep,
    user: CsrfWatcherDep,
    back: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    rule = await rules.get_rule(session, _caller(user), rule_id)
    patch = WatchRulePatch(is_active=True)
    await rules.update_rule(session, rule, patch, await _enabled_sources(runtime))
    return RedirectResponse(_back(back, rule_id), status_code=303)


@router.post("/rules/{rule_id:int}/disable")
async def disable_rule(
    rule_id: int,
    session: SessionDep,
    user: CsrfWatcherDep,
    back: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    rules.disable_rule(session, await rules.get_rule(session, _caller(user), rule_id))
    return RedirectResponse(_back(back, rule_id), status_code=303)


@router.post("/rules/{rule_id:int}/delete")
async def delete_rule(rule_id: int, session: SessionDep, user: CsrfWatcherDep) -> Response:
    """Remove the rule and its matches (the API's hard delete); its events stay."""
    await rules.hard_delete_rule(session, await rules.get_rule(session, _caller(user), rule_id))
    return RedirectResponse("/ui/watch/rules", status_code=303)


# Events and notifications ------------------------------------------------------------------


@router.get("/events", response_class=HTMLResponse)
async def events_page(
    request: Request,
    session: SessionDep,
    user: WatchViewerDep,
    cursor: CursorParam = None,
    owner: OwnerParam = None,
    rule: int | None = None,
    changes: bool = False,
) -> Response:
    """Alerts (matches, price and stock moves) newest first; ``changes`` adds rule changes."""
    whose = _caller(user).owner(owner)
    found = await feed.events(session, whose, _page(cursor), rule_id=rule, alerts_only=not changes)
    shown, older = _cut(request, found, lambda e: (e.created_at, e.id))
    context = {
        "events": [forms.event_view(e) for e in shown],
        "older": older,
        "owner": owner,
        "rule": rule,
        "changes": changes,
    }
    return _render(request, user, "events.html", context)


@router.get("/notifications", response_class=HTMLResponse)
async def notifications_page(
    request: Request, session: SessionDep, user: WatchViewerDep, cursor: CursorParam = None
) -> Response:
    found = await _feed(session, user.user_id, _page(cursor))
    shown, older = _cut(request, found, lambda pair: (pair[0].created_at, pair[0].id))
    context = {
        "feed": [forms.feed_item(n, e) for n, e in shown],
        "unread": await feed.unread_count(session, user.user_id),
        "older": older,
    }
    return _render(request, user, "notifications.html", context)


@router.get("/notifications/{notification_id:int}", response_class=HTMLResponse)
async def notification_item(
    notification_id: int, request: Request, session: SessionDep, user: WatchViewerDep
) -> Response:
    """One feed item, for the live panel to insert when the stream announces it."""
    found = await session.get(WatchNotification, notification_id)
    if found is None or found.channel != "realtime" or not _caller(user).may_see(found.user_id):
        raise NotFound(f"Notification {notification_id} does not exist")
    event = await session.get(WatchEvent, found.event_id)
    assert event is not None  # a notification goes with its event (ON DELETE CASCADE)
    return _render(request, user, "_notification.html", {"n": forms.feed_item(found, event)})


@router.post("/notifications/read-all")
async def mark_all_read(
    session: SessionDep, user: CsrfWatcherDep, back: Annotated[str, Form(max_length=20)] = ""
) -> Response:
    assert user.user_id is not None  # CsrfWatcherDep admits watch users only
    await feed.mark_all_read(session, user.user_id)
    target = "/ui/watch/notifications" if back == "notifications" else "/ui/watch"
    return RedirectResponse(target, status_code=303)


# Preferences and users ---------------------------------------------------------------------


async def _preferences_page(
    request: Request,
    session: AsyncSession,
    user: UiUser,
    values: Values | None = None,
    exc: Exception | None = None,
) -> Response:
    settings = request.app.state.runtime.settings
    assert user.user_id is not None  # a watch user's session
    person = await users.get_user(session, user.user_id)
    preferences = users.preferences_of(person)
    errors, status = refusal(exc)
    context = {
        "v": values or forms.preference_values(person.display_name, preferences),
        "email": person.email,
        "frequencies": forms.FREQUENCIES,
        "webhook": await webhooks.describe(session, person, preferences.notifications_webhook),
        "errors": errors,
        "saved": request.query_params.get("saved") == "1",
        "discogs": await watch_discogs.context(session, user.user_id, settings, request),
    }
    return _render(request, user, "preferences.html", context, status)


@router.get("/preferences", response_class=HTMLResponse)
async def preferences_page(request: Request, session: SessionDep, user: WatcherDep) -> Response:
    return await _preferences_page(request, session, user)


@router.post("/preferences", response_class=HTMLResponse)
async def save_preferences(request: Request, session: SessionDep, user: CsrfWatcherDep) -> Response:
    """Saved through ``PATCH /me``'s service: a changed webhook list reconfigures delivery."""
    assert user.user_id is not None
    values = forms.preference_values_from_form(await request.form())
    try:
        patch = forms.me_patch(values)
    except FormInvalid as exc:
        return await _preferences_page(request, session, user, values, exc)
    await users.update_me(session, await users.get_user(session, user.user_id), patch)
    return RedirectResponse("/ui/watch/preferences?saved=1", status_code=303)


@router.get("/users", response_class=HTMLResponse)
async def users_page(request: Request, session: SessionDep, user: UiUserDep) -> Response:
    """Every user (admins only), with their rule counts and links to their rules and events."""
    people = await users.list_users(session, USERS_SHOWN, 0)
    counts = select(WatchRule.user_id, func.count()).group_by(WatchRule.user_id)
    context = {
        "people": people,
        "rule_counts": dict((await session.execute(counts)).all()),
        "total": await users.count_users(session),
    }
    return _render(request, user, "users.html", context)
