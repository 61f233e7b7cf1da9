"""Seed 003's Discogs integration: link an account, import its wantlist and collection.

A user links their Discogs account by name (public lists), with a personal access token,
or through OAuth 1.0a (``oauth/start`` hands back Discogs' authorisation page; Discogs
sends the user back to the callback with a verifier, which is exchanged for an access
token). Tokens are sealed at rest. An import is a queue job that reads the lists a page
at a time, saving its place after each page, and turns every release into a watch
release (kind ``release``): new ones are created, changed ones updated, ones that left a
list are paused, and one the user deleted stays deleted. Connected accounts are imported
again on a schedule.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.catalog import requests
from dispatch.catalog.context import CatalogContext
from dispatch.catalog.provider import ProviderError, ProviderRejected
from dispatch.catalog.records import MalformedPayload
from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from dispatch.models import (
    User,
    WatchAccountLink,
    WatchImportedItem,
    WatchImportJob,
    WatchOAuthState,
    WatchRule,
)
from dispatch.queue import service as queue
from dispatch.queue.service import JobSpec
from dispatch.security.sealing import Sealer, Unreadable, sealer_for
from dispatch.watch import releases, rules
from dispatch.watch.discogs_account import (
    Consumer,
    Credentials,
    DiscogsAccount,
    ListedRelease,
    ListPage,
    ListSource,
    OAuthFailed,
)
from dispatch.watch.users import preferences_of

log = structlog.get_logger(__name__)

PROVIDER = "discogs"
STATE_TTL = timedelta(seconds=600)  # seed 003's state lifetime
DEFAULT_SCOPES = ("identity", "wantlist", "collection")
IMPORT_KIND = "watch.discogs_import"
SYNC_KIND = "watch.discogs_sync"
SYNC_BATCH = 25  # seed 003 synced 25 users a batch
IN_FLIGHT = ("queued", "running")
ERRORS_KEPT = 50
ImportSource = Literal["wantlist", "collection", "both"]


def stages(source: str) -> list[ListSource]:
    return ["wantlist", "collection"] if source == "both" else [source]  # type: ignore[list-item]


# Accounts ---------------------------------------------------------------------------


async def discogs_account(catalog: CatalogContext) -> DiscogsAccount:
    """Discogs calls through the catalogue's Discogs configuration and pacing."""
    settings = catalog.settings
    config = await catalog.config(PROVIDER)
    consumer = None
    if settings.discogs_consumer_key and settings.discogs_consumer_secret:
        consumer = Consumer(
            settings.discogs_consumer_key, settings.discogs_consumer_secret.get_secret_value()
        )
    return DiscogsAccount(
        catalog.http(config),
        consumer,
        service_token=config.credential("token"),
        user_agent=str(config.option("user_agent", config.user_agent)),
    )


def sealer(settings: Settings) -> Sealer:
    found = sealer_for(settings)
    if found is None:
        raise ServiceUnavailable(
            "No key to seal account tokens: set TOKEN_ENCRYPTION_KEYS or SECRET_KEY",
            code="integration_unavailable",
        )
    return found


def credentials(box: Sealer | None, link: WatchAccountLink) -> Credentials:
    """The link's credentials with their secrets opened."""
    if link.auth == "none" or not link.access_token:
        return Credentials("none")
    if box is None:
        raise Unreadable("no key is configured to open the account's tokens")
    token = box.open(link.access_token)
    secret = box.open(link.access_secret) if link.access_secret else ""
    return Credentials("oauth1" if link.auth == "oauth1" else "personal", token, secret)


async def link_of(session: AsyncSession, user_id: int) -> WatchAccountLink | None:
    return await session.scalar(
        select(WatchAccountLink).where(
            WatchAccountLink.user_id == user_id, WatchAccountLink.provider == PROVIDER
        )
    )


async def _user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist")
    return user


async def save_link(
    session: AsyncSession,
    user_id: int,
    username: str,
    *,
    auth: Literal["oauth1", "personal", "none"],
    token: str | None = None,
    secret: str | None = None,
    box: Sealer | None = None,
    scopes: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
) -> WatchAccountLink:
    """Create or replace the user's Discogs link (a new account or new tokens)."""
    await _user(session, user_id)
    now = utcnow()
    link = await link_of(session, user_id)
    if link is None:
        link = WatchAccountLink(user_id=user_id, provider=PROVIDER, connected_at=now)
        session.add(link)
    elif link.external_user_id.lower() != username.lower():
        link.connected_at = now
        link.last_import_at = None
    link.external_user_id = username
    link.auth = auth
    link.access_token = box.seal(token) if box is not None and token else None
    link.access_secret = box.seal(secret) if box is not None and secret else None
    link.scopes = list(scopes)
    link.token_metadata = metadata or {}
    link.last_error = None
    link.updated_at = now
    await session.flush()
    return link


async def begin_oauth(
    session: AsyncSession,
    account: DiscogsAccount,
    box: Sealer,
    user_id: int,
    scopes: Sequence[str],
    callback: str,
) -> tuple[WatchOAuthState, str]:
    """A temporary token from Discogs, remembered under a fresh state for ten minutes."""
    await _user(session, user_id)
    token, secret = await account.request_token(callback)
    now = utcnow()
    await session.execute(delete(WatchOAuthState).where(WatchOAuthState.expires_at < now))
    state = WatchOAuthState(
        state=secrets.token_urlsafe(32),
        user_id=user_id,
        provider=PROVIDER,
        request_token=token,
        request_secret=box.seal(secret),
        scopes=list(scopes),
        created_at=now,
        expires_at=now + STATE_TTL,
    )
    session.add(state)
    await session.flush()
    return state, token


async def pending_state(
    session: AsyncSession, *, state: str | None = None, token: str | None = None
) -> WatchOAuthState:
    """An authorisation in progress, by its state (the API) or its token (Discogs' redirect)."""
    found = None
    if state is not None:
        found = await session.get(WatchOAuthState, state)
    elif token is not None:
        found = await session.scalar(
            select(WatchOAuthState).where(WatchOAuthState.request_token == token)
        )
    if found is None:
        raise NotFound("No Discogs authorisation in progress has that state")
    if found.expires_at <= utcnow():
        await session.delete(found)
        raise ValidationFailed(
            "The Discogs authorisation expired; start again",
            code="oauth_state_expired",
            details={"ttl_seconds": int(STATE_TTL.total_seconds())},
        )
    return found


async def finish_oauth(
    session: AsyncSession,
    account: DiscogsAccount,
    box: Sealer,
    pending: WatchOAuthState,
    verifier: str,
) -> WatchAccountLink:
    """Exchange the approved token for an access token, learn the username, link it."""
    await session.delete(pending)  # one use, whatever happens next
    try:
        request_secret = box.open(pending.request_secret)
        token, secret = await account.access_token(pending.request_token, request_secret, verifier)
        credentials = Credentials("oauth1", token, secret)
        username = await account.identity(credentials)
    except (OAuthFailed, ProviderRejected, MalformedPayload, Unreadable) as exc:
        await session.commit()
        raise ValidationFailed(
            f"Discogs did not complete the authorisation: {exc}", code="oauth_failed"
        ) from exc
    return await save_link(
        session,
        pending.user_id,
        username,
        auth="oauth1",
        token=token,
        secret=secret,
        box=box,
        scopes=pending.scopes,
        metadata={"method": "oauth1"},
    )


async def disconnect(session: AsyncSession, user_id: int) -> WatchAccountLink | None:
    """Forget the link and its tokens; an import in flight ends. Watch releases stay."""
    link = await link_of(session, user_id)
    if link is None:
        return None
    await session.delete(link)
    now = utcnow()
    jobs = await session.scalars(
        select(WatchImportJob).where(
            WatchImportJob.user_id == user_id, WatchImportJob.status.in_(IN_FLIGHT)
        )
    )
    for job in jobs:
        finish(job, "failed", "The Discogs account was disconnected", now)
    await session.execute(delete(WatchOAuthState).where(WatchOAuthState.user_id == user_id))
    return link


# Imports ----------------------------------------------------------------------------


def import_spec(import_id: int, queue_name: str) -> JobSpec:
    return JobSpec(
        kind=IMPORT_KIND,
        args={"import_id": import_id},
        queue=queue_name,
        dedupe_key=f"{IMPORT_KIND}:{import_id}",
        max_attempts=5,
    )


async def in_flight(session: AsyncSession, user_id: int) -> WatchImportJob | None:
    return await session.scalar(
        select(WatchImportJob).where(
            WatchImportJob.user_id == user_id,
            WatchImportJob.provider == PROVIDER,
            WatchImportJob.status.in_(IN_FLIGHT),
        )
    )


async def start_import(
    session: AsyncSession, user_id: int, source: ImportSource, queue_name: str, trigger: str = "api"
) -> tuple[WatchImportJob, bool]:
    """A new import job (queued in this transaction), or the one already in flight."""
    if await link_of(session, user_id) is None:
        raise Conflict("Connect a Discogs account before importing", code="discogs_not_connected")
    running = await in_flight(session, user_id)
    if running is not None:
        return running, False
    now = utcnow()
    job = WatchImportJob(
        user_id=user_id,
        provider=PROVIDER,
        source=source,
        status="queued",
        trigger=trigger,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(job)
            await session.flush()
    except IntegrityError:  # another request started one meanwhile
        running = await in_flight(session, user_id)
        if running is None:
            raise
        return running, False
    enqueued = await queue.enqueue(session, import_spec(job.id, queue_name))
    job.job_id = enqueued.job_id
    return job, True


def finish(job: WatchImportJob, status: str, message: str | None, now: datetime) -> None:
    job.status = status
    job.message = message
    job.finished_at = now
    job.updated_at = now


def _note_errors(job: WatchImportJob, errors: list[dict[str, Any]]) -> None:
    if not errors:
        return
    job.error_count += len(errors)
    job.errors = [*job.errors, *errors][-ERRORS_KEPT:]


class Importer:
    """Runs one import job: reads each list a page at a time, writes each page at once."""

    def __init__(self, catalog: CatalogContext) -> None:
        self.catalog = catalog
        self.database: Database = catalog.database
        self.box = sealer_for(catalog.settings)

    async def run(self, import_id: int, *, last_attempt: bool) -> dict[str, Any]:
        try:
            return await self._run(import_id, last_attempt)
        finally:
            await self.catalog.flush_requests()  # the user's own provider requests

    async def _run(self, import_id: int, last_attempt: bool) -> dict[str, Any]:
        async with self.database.session() as session:
            job = await session.get(WatchImportJob, import_id)
            if job is None or job.status not in IN_FLIGHT:
                return {"skipped": True}
            link = await link_of(session, job.user_id)
            user = await session.get(User, job.user_id)
            now = utcnow()
            if link is None or user is None:
                finish(job, "failed", "The Discogs account was disconnected", now)
                return {"status": "failed"}
            try:
                creds = credentials(self.box, link)
            except Unreadable as exc:
                message = f"The account's tokens cannot be opened ({exc}); connect again"
                finish(job, "failed", message, now)
                link.last_error = message
                return {"status": "failed"}
            job.status = "running"
            job.started_at = job.started_at or now
            job.updated_at = now
            username, user_id, source = link.external_user_id, job.user_id, job.source
            stage, page = job.stage, job.page
            currency = preferences_of(user).currency
        account = await discogs_account(self.catalog)
        todo = stages(source)
        if stage in todo:
            todo = todo[todo.index(stage) :]
        else:
            page = 0
        try:
            with requests.acting_for(user_id):
                for current in todo:
                    await self._read(account, creds, import_id, username, current, page, currency)
                    page = 0
        except (ProviderRejected, OAuthFailed, MalformedPayload) as exc:
            await self._end(import_id, "failed", str(exc))
            return {"status": "failed", "error": str(exc)}
        except ProviderError as exc:
            if last_attempt:
                await self._end(import_id, "failed", str(exc))
                return {"status": "failed", "error": str(exc)}
            await self._note(import_id, f"retrying: {exc}")
            raise
        await self._end(import_id, "succeeded", None)
        return {"status": "succeeded"}

    async def _read(
        self,
        account: DiscogsAccount,
        creds: Credentials,
        import_id: int,
        username: str,
        source: ListSource,
        done: int,
        currency: str,
    ) -> None:
        """Every page of one list after the ``done`` ones; then what left the list."""
        enabled = list(await self.catalog.configs())
        while True:
            listing = await account.list_page(creds, username, source, done + 1)
            done += 1
            async with self.database.session() as session:
                job = await session.get(WatchImportJob, import_id)
                if job is None or job.status not in IN_FLIGHT:
                    return
                await _apply(session, job, source, listing, enabled, currency)
                job.stage, job.page, job.pages = source, done, listing.pages
                job.updated_at = utcnow()
            if done >= listing.pages or not listing.items:
                break
        async with self.database.session() as session:
            job = await session.get(WatchImportJob, import_id)
            if job is not None and job.status in IN_FLIGHT:
                await _removed(session, job, source)

    async def _end(self, import_id: int, status: str, message: str | None) -> None:
        async with self.database.session() as session:
            job = await session.get(WatchImportJob, import_id)
            if job is None or job.status not in IN_FLIGHT:
                return
            now = utcnow()
            finish(job, status, message, now)
            link = await link_of(session, job.user_id)
            if link is not None:
                link.last_error = message
                if status == "succeeded":
                    link.last_import_at = now

    async def _note(self, import_id: int, message: str) -> None:
        async with self.database.session() as session:
            job = await session.get(WatchImportJob, import_id)
            if job is not None and job.status in IN_FLIGHT:
                job.message = message
                job.updated_at = utcnow()


async def _rules_by_release(session: AsyncSession, user_id: int) -> dict[int, WatchRule]:
    found = await session.scalars(
        select(WatchRule).where(WatchRule.user_id == user_id, WatchRule.kind == releases.KIND)
    )
    by_release: dict[int, WatchRule] = {}
    for rule in found:
        release_id = rule.query.get("release_id")
        if isinstance(release_id, int):
            by_release.setdefault(release_id, rule)
    return by_release


def _release_body(item: ListedRelease, currency: str) -> releases.WatchReleaseCreate:
    return releases.WatchReleaseCreate(
        discogs_release_id=item.release_id,
        discogs_master_id=item.master_id,
        title=item.title,
        artist=item.artist,
        year=item.year,
        currency=currency,
    )


async def _apply(
    session: AsyncSession,
    job: WatchImportJob,
    source: ListSource,
    listing: ListPage,
    enabled: list[str],
    currency: str,
) -> None:
    """One page: each release tracked as an imported item with its watch release."""
    now = utcnow()
    ids = [item.release_id for item in listing.items]
    known = {
        item.external_id: item
        for item in await session.scalars(
            select(WatchImportedItem).where(
                WatchImportedItem.user_id == job.user_id,
                WatchImportedItem.provider == PROVIDER,
                WatchImportedItem.source == source,
                WatchImportedItem.external_id.in_(ids),
            )
        )
    }
    by_release = await _rules_by_release(session, job.user_id)
    origin = {"provider": PROVIDER, "source": source, "import_id": job.id}
    _note_errors(job, listing.errors)
    job.processed_count += len(listing.items) + len(listing.errors)
    for item in listing.items:
        tracked = known.get(item.release_id)
        if tracked is None:
            rule = by_release.get(item.release_id)
            created = rule is None
            if rule is None:
                body = _release_body(item, currency)
                rule = await releases.create_release_rule(
                    session, job.user_id, body, enabled, origin=origin
                )
                by_release[item.release_id] = rule
                job.created_count += 1
            tracked = WatchImportedItem(
                user_id=job.user_id,
                provider=PROVIDER,
                source=source,
                external_id=item.release_id,
                rule_id=rule.id,
                created_rule=created,
                first_seen_at=now,
            )
            session.add(tracked)
            known[item.release_id] = tracked
        _refresh(tracked, item, job.id, now)
        if tracked.rule_id is None:
            continue  # the user deleted its watch release: it stays deleted
        job.imported_count += 1
        rule = by_release.get(item.release_id) or await session.get(WatchRule, tracked.rule_id)
        if rule is None:
            continue
        if tracked.paused_rule:
            tracked.paused_rule = False
            rules.set_active(session, rule, True, now, reason=f"back on the Discogs {source}")
        if tracked.created_rule and _update_release(rule, item, now):
            job.updated_count += 1
    await session.flush()


def _refresh(tracked: WatchImportedItem, item: ListedRelease, job_id: int, now: datetime) -> None:
    tracked.master_id = item.master_id
    tracked.title = item.title
    tracked.artist = item.artist
    tracked.year = item.year
    tracked.import_job_id = job_id
    tracked.last_seen_at = now
    tracked.removed_at = None


def _update_release(rule: WatchRule, item: ListedRelease, now: datetime) -> bool:
    """Bring an imported watch release's details up to Discogs' (the user's price and
    condition settings stay); whether anything changed."""
    wanted = {"title": item.title, "artist": item.artist, "year": item.year}
    if item.master_id is not None:
        wanted["master_id"] = item.master_id
    query = dict(rule.query)
    changed = {key: value for key, value in wanted.items() if query.get(key) != value}
    if not changed:
        return False
    for key, value in changed.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    rule.query = query
    rule.name = item.title[:120]
    rule.updated_at = now
    return True


async def _removed(session: AsyncSession, job: WatchImportJob, source: ListSource) -> None:
    """Items of ``source`` this import did not see left the list: marked removed, and a
    watch release the import created is paused unless the other list still has it."""
    now = utcnow()
    gone = list(
        await session.scalars(
            select(WatchImportedItem).where(
                WatchImportedItem.user_id == job.user_id,
                WatchImportedItem.provider == PROVIDER,
                WatchImportedItem.source == source,
                WatchImportedItem.removed_at.is_(None),
                (WatchImportedItem.import_job_id != job.id)
                | WatchImportedItem.import_job_id.is_(None),
            )
        )
    )
    for item in gone:
        item.removed_at = now
        job.removed_count += 1
        if not item.created_rule or item.rule_id is None:
            continue
        still_listed = await session.scalar(
            select(func.count())
            .select_from(WatchImportedItem)
            .where(
                WatchImportedItem.rule_id == item.rule_id,
                WatchImportedItem.id != item.id,
                WatchImportedItem.removed_at.is_(None),
            )
        )
        rule = await session.get(WatchRule, item.rule_id)
        if still_listed or rule is None or not rule.is_active:
            continue
        rules.set_active(session, rule, False, now, reason=f"removed from the Discogs {source}")
        item.paused_rule = True


async def sync_due(database: Database, queue_name: str, interval: timedelta) -> int:
    """Queue an import for connected accounts not imported for ``interval``; how many.
    Expired OAuth states are dropped on the way."""
    now = utcnow()
    started = 0
    async with database.session() as session:
        await session.execute(delete(WatchOAuthState).where(WatchOAuthState.expires_at < now))
        busy = select(WatchImportJob.user_id).where(WatchImportJob.status.in_(IN_FLIGHT))
        due = list(
            await session.scalars(
                select(WatchAccountLink.user_id)
                .join(User, User.id == WatchAccountLink.user_id)
                .where(
                    WatchAccountLink.provider == PROVIDER,
                    User.is_active.is_(True),
                    (WatchAccountLink.last_import_at.is_(None))
                    | (WatchAccountLink.last_import_at < now - interval),
                    WatchAccountLink.user_id.not_in(busy),
                )
                .order_by(WatchAccountLink.last_import_at.nulls_first(), WatchAccountLink.id)
                .limit(SYNC_BATCH)
            )
        )
        for user_id in due:
            _, created = await start_import(session, user_id, "both", queue_name, "schedule")
            started += created
    return started
