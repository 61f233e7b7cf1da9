"""Seed 003's ``/integrations/discogs/...`` routes, in its shapes (extended).

Rate-limit groups as in the seed: ``discogs`` for the account and import routes,
``auth_endpoints`` for the OAuth start and callback. Discogs' browser redirect lands on
the public ``GET .../oauth/callback`` (the temporary token identifies the authorisation)
and then on the watch UI's preferences page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from dispatch.catalog.provider import ProviderError
from dispatch.db.engine import Database
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import ERROR_RESPONSES, AppError, NotFound, ServiceUnavailable
from dispatch.models import WatchAccountLink, WatchImportedItem, WatchImportJob
from dispatch.security.deps import limit_anonymous
from dispatch.watch import integrations
from dispatch.watch.deps import DiscogsCaller, OAuthCaller
from dispatch.watch.discogs_account import DiscogsAccount, OAuthFailed, authorize_url, release_url

router = APIRouter(tags=["discogs integration"], responses=ERROR_RESPONSES)
BASE = "/integrations/discogs"
UI_RETURN = "/ui/watch/preferences"


class ConnectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_user_id: str = Field(min_length=1, max_length=255, pattern=r"^[^/\s]+$")
    access_token: str | None = Field(default=None, min_length=1, max_length=512)
    token_metadata: dict[str, Any] | None = None


class OAuthStartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scopes: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(
        default=None, max_length=10
    )


class OAuthCallbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: str = Field(min_length=8, max_length=64)
    code: str = Field(min_length=1, max_length=255, description="Discogs' oauth_verifier")


class DisconnectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    revoke: bool = True


class ImportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: integrations.ImportSource = "both"


class IntegrationStatus(BaseModel):
    connected: bool
    provider: str = integrations.PROVIDER
    external_user_id: str | None = None
    connected_at: datetime | None = None
    has_access_token: bool = False
    auth: str | None = None
    scopes: list[str] = []
    last_import_at: datetime | None = None
    last_error: str | None = None
    oauth_available: bool = False


class OAuthStartOut(BaseModel):
    provider: str
    authorize_url: str
    state: str
    scopes: list[str]
    expires_at: datetime


class DisconnectOut(IntegrationStatus):
    disconnected: bool
    tokens_deleted: bool
    # Discogs has no API to revoke an OAuth 1.0a token: the user removes the application
    # at this page (seed 003 called a revoke URL that Discogs does not have).
    revoke_url: str | None = None


class ImportJobOut(BaseModel):
    id: int
    user_id: int
    provider: str
    source: str
    status: str
    trigger: str
    job_id: int | None
    stage: str | None
    page: int
    pages: int | None
    processed_count: int
    imported_count: int
    created_count: int
    updated_count: int
    removed_count: int
    error_count: int
    errors: list[dict[str, Any]]
    message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class ImportedItemOut(BaseModel):
    id: int
    watch_release_id: int | None
    discogs_release_id: int
    discogs_master_id: int | None
    source: str
    title: str
    artist: str | None
    year: int | None
    imported_at: datetime
    last_seen_at: datetime
    removed_at: datetime | None
    discogs_url: str


class OpenInDiscogsOut(BaseModel):
    watch_release_id: int
    discogs_release_id: int
    url: str


def _oauth_available(runtime: RuntimeDep) -> bool:
    settings = runtime.settings
    return bool(settings.discogs_consumer_key and settings.discogs_consumer_secret)


def _status(link: WatchAccountLink | None, oauth: bool) -> IntegrationStatus:
    if link is None:
        return IntegrationStatus(connected=False, oauth_available=oauth)
    return IntegrationStatus(
        connected=True,
        external_user_id=link.external_user_id,
        connected_at=link.connected_at,
        has_access_token=link.access_token is not None,
        auth=link.auth,
        scopes=link.scopes,
        last_import_at=link.last_import_at,
        last_error=link.last_error,
        oauth_available=oauth,
    )


def _job_out(job: WatchImportJob) -> ImportJobOut:
    return ImportJobOut.model_validate(job, from_attributes=True)


def _site(runtime: RuntimeDep) -> str:
    return str(runtime.settings.discogs_site_url)


def _callback_url(request: Request, runtime: RuntimeDep) -> str:
    configured = runtime.settings.discogs_oauth_callback_url
    return str(configured) if configured else str(request.url_for("discogs_oauth_return"))


async def _account(runtime: RuntimeDep) -> DiscogsAccount:
    return await integrations.discogs_account(runtime.catalog)


def _unavailable(exc: ProviderError) -> ServiceUnavailable:
    return ServiceUnavailable(f"Discogs could not be reached: {exc}", code="provider_unavailable")


@router.get(f"{BASE}/status")
async def discogs_status(
    session: SessionDep,
    runtime: RuntimeDep,
    caller: DiscogsCaller,
    user_id: Annotated[int | None, Query(description="Admin keys: the user")] = None,
) -> IntegrationStatus:
    link = await integrations.link_of(session, caller.acting_for(user_id))
    return _status(link, _oauth_available(runtime))


@router.post(f"{BASE}/connect")
async def connect(
    body: ConnectBody,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: DiscogsCaller,
    user_id: Annotated[int | None, Query(description="Admin keys: the user")] = None,
) -> IntegrationStatus:
    """Link a Discogs account by username, with a personal access token or without one
    (public lists only)."""
    box = integrations.sealer(runtime.settings) if body.access_token else None
    link = await integrations.save_link(
        session,
        caller.acting_for(user_id),
        body.external_user_id,
        auth="personal" if body.access_token else "none",
        token=body.access_token,
        box=box,
        metadata=body.token_metadata,
    )
    return _status(link, _oauth_available(runtime))


@router.post(f"{BASE}/oauth/start")
async def oauth_start(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: OAuthCaller,
    body: OAuthStartBody | None = None,
    user_id: Annotated[int | None, Query(description="Admin keys: the user")] = None,
) -> OAuthStartOut:
    """Start Discogs' OAuth 1.0a: send the user to ``authorize_url`` within ten minutes."""
    if not _oauth_available(runtime):
        raise ServiceUnavailable(
            "Discogs OAuth is not configured: set DISCOGS_CONSUMER_KEY and DISCOGS_CONSUMER_SECRET",
            code="integration_unavailable",
        )
    box = integrations.sealer(runtime.settings)
    scopes = (body.scopes if body and body.scopes else None) or list(integrations.DEFAULT_SCOPES)
    account = await _account(runtime)
    try:
        pending, token = await integrations.begin_oauth(
            session,
            account,
            box,
            caller.acting_for(user_id),
            scopes,
            _callback_url(request, runtime),
        )
    except OAuthFailed as exc:
        raise ServiceUnavailable(
            f"Discogs refused to start the authorisation: {exc}", code="oauth_failed"
        ) from exc
    except ProviderError as exc:
        raise _unavailable(exc) from exc
    return OAuthStartOut(
        provider=integrations.PROVIDER,
        authorize_url=authorize_url(_site(runtime), token),
        state=pending.state,
        scopes=pending.scopes,
        expires_at=pending.expires_at,
    )


@router.post(f"{BASE}/oauth/callback")
async def oauth_callback(
    body: OAuthCallbackBody, session: SessionDep, runtime: RuntimeDep, caller: OAuthCaller
) -> IntegrationStatus:
    """Finish the authorisation with the verifier Discogs showed or sent back (``code``)."""
    pending = await integrations.pending_state(session, state=body.state)
    if not caller.may_see(pending.user_id):
        raise NotFound("No Discogs authorisation in progress has that state")
    try:
        link = await integrations.finish_oauth(
            session,
            await _account(runtime),
            integrations.sealer(runtime.settings),
            pending,
            body.code,
        )
    except ProviderError as exc:
        raise _unavailable(exc) from exc
    return _status(link, _oauth_available(runtime))


@router.get(
    f"{BASE}/oauth/callback",
    name="discogs_oauth_return",
    dependencies=[Depends(limit_anonymous)],
    response_class=RedirectResponse,
    status_code=status.HTTP_303_SEE_OTHER,
)
async def oauth_return(
    runtime: RuntimeDep,
    oauth_token: str | None = None,
    oauth_verifier: str | None = None,
    denied: str | None = None,
) -> RedirectResponse:
    """Where Discogs sends the user's browser back (public: the temporary token, known
    only to Discogs and that user, names the authorisation). Lands on the preferences page."""
    outcome: dict[str, str] = {"discogs": "connected"}
    database: Database = runtime.database
    try:
        async with database.session() as session:
            token = denied or oauth_token
            if token is None:
                raise NotFound("No oauth_token in the redirect")
            pending = await integrations.pending_state(session, token=token)
            if denied is not None or not oauth_verifier:
                await session.delete(pending)
                outcome = {"discogs": "denied"}
            else:
                await integrations.finish_oauth(
                    session,
                    await _account(runtime),
                    integrations.sealer(runtime.settings),
                    pending,
                    oauth_verifier,
                )
    except (AppError, ProviderError) as exc:
        outcome = {"discogs": "failed", "reason": str(exc)[:200]}
    return RedirectResponse(f"{UI_RETURN}?{urlencode(outcome)}", status.HTTP_303_SEE_OTHER)


@router.post(f"{BASE}/disconnect")
async def disconnect(
    session: SessionDep,
    runtime: RuntimeDep,
    caller: DiscogsCaller,
    body: DisconnectBody | None = None,
    user_id: Annotated[int | None, Query(description="Admin keys: the user")] = None,
) -> DisconnectOut:
    """Forget the account and its tokens (watch releases it imported stay)."""
    revoke = body.revoke if body is not None else True
    link = await integrations.disconnect(session, caller.acting_for(user_id))
    oauth = link is not None and link.auth == "oauth1"
    return DisconnectOut(
        connected=False,
        oauth_available=_oauth_available(runtime),
        disconnected=link is not None,
        tokens_deleted=link is not None and link.access_token is not None,
        revoke_url=f"{_site(runtime).rstrip('/')}/settings/applications"
        if revoke and oauth
        else None,
    )


@router.post(
    f"{BASE}/import",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"description": "An import was already in flight: that one"}},
)
async def start_import(
    session: SessionDep,
    runtime: RuntimeDep,
    caller: DiscogsCaller,
    response: Response,
    body: ImportBody | None = None,
    user_id: Annotated[int | None, Query(description="Admin keys: the user")] = None,
) -> ImportJobOut:
    """Import the wantlist, the collection or both into watch releases (a queue job)."""
    job, created = await integrations.start_import(
        session,
        caller.acting_for(user_id),
        (body or ImportBody()).source,
        runtime.settings.catalog_queue,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    await session.flush()
    return _job_out(job)


@router.get(f"{BASE}/imports")
async def list_imports(
    session: SessionDep,
    caller: DiscogsCaller,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    user_id: Annotated[int | None, Query(description="Admin keys: the user")] = None,
) -> list[ImportJobOut]:
    query = select(WatchImportJob).order_by(WatchImportJob.id.desc()).limit(limit).offset(offset)
    owner = caller.owner(user_id)
    if owner is not None:
        query = query.where(WatchImportJob.user_id == owner)
    return [_job_out(job) for job in await session.scalars(query)]


@router.get(f"{BASE}/import/{{job_id}}")
async def get_import(job_id: int, session: SessionDep, caller: DiscogsCaller) -> ImportJobOut:
    job = await session.get(WatchImportJob, job_id)
    if job is None or not caller.may_see(job.user_id):
        raise NotFound(f"Import job {job_id} does not exist")
    return _job_out(job)


def _item_out(item: WatchImportedItem, site: str) -> ImportedItemOut:
    return ImportedItemOut(
        id=item.id,
        watch_release_id=item.rule_id,
        discogs_release_id=item.external_id,
        discogs_master_id=item.master_id,
        source=item.source,
        title=item.title,
        artist=item.artist,
        year=item.year,
        imported_at=item.first_seen_at,
        last_seen_at=item.last_seen_at,
        removed_at=item.removed_at,
        discogs_url=release_url(site, item.external_id),
    )


@router.get(f"{BASE}/imported-items")
async def imported_items(
    session: SessionDep,
    runtime: RuntimeDep,
    caller: DiscogsCaller,
    source: Literal["wantlist", "collection"] | None = None,
    include_removed: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    user_id: Annotated[int | None, Query(description="Admin keys: the user")] = None,
) -> list[ImportedItemOut]:
    """What the imports found, newest first, each with its watch release."""
    query = (
        select(WatchImportedItem)
        .where(WatchImportedItem.provider == integrations.PROVIDER)
        .order_by(WatchImportedItem.first_seen_at.desc(), WatchImportedItem.id.desc())
        .limit(limit)
        .offset(offset)
    )
    owner = caller.owner(user_id)
    if owner is not None:
        query = query.where(WatchImportedItem.user_id == owner)
    if source is not None:
        query = query.where(WatchImportedItem.source == source)
    if not include_removed:
        query = query.where(WatchImportedItem.removed_at.is_(None))
    site = _site(runtime)
    return [_item_out(item, site) for item in await session.scalars(query)]


@router.get(
    f"{BASE}/imported-items/{{watch_release_id}}/open-in-discogs",
    responses={307: {"description": "With redirect=true: to the release on Discogs"}},
    response_model=None,
)
async def open_in_discogs(
    watch_release_id: int,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: DiscogsCaller,
    redirect: bool = False,
) -> OpenInDiscogsOut | RedirectResponse:
    """The release's Discogs page: as JSON, or (``redirect=true``) a 307 to it."""
    item = await session.scalar(
        select(WatchImportedItem)
        .where(WatchImportedItem.rule_id == watch_release_id)
        .order_by(WatchImportedItem.id)
        .limit(1)
    )
    if item is None or not caller.may_see(item.user_id):
        raise NotFound(f"No imported item has watch release {watch_release_id}")
    url = release_url(_site(runtime), item.external_id)
    if redirect:
        return RedirectResponse(url, status.HTTP_307_TEMPORARY_REDIRECT)
    return OpenInDiscogsOut(
        watch_release_id=watch_release_id, discogs_release_id=item.external_id, url=url
    )
