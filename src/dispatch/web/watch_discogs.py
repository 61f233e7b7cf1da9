"""The Discogs account on the watch user's preferences page: connect through Discogs
(OAuth 1.0a) or by username and personal token, import the wantlist / collection, follow
the imports, disconnect. The forms call the services the JSON API calls
(``dispatch.watch.integrations``) and come back to the preferences page with the outcome.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.catalog.provider import ProviderError
from dispatch.config import Settings
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import AppError
from dispatch.models import WatchImportJob
from dispatch.watch import integrations
from dispatch.watch.discogs_account import authorize_url
from dispatch.web.auth import CsrfWatcherDep

router = APIRouter(prefix="/ui/watch/discogs", include_in_schema=False)
BACK = "/ui/watch/preferences"
IMPORTS_SHOWN = 5
OUTCOMES = {
    "connected": "Your Discogs account is connected.",
    "linked": "Your Discogs account is linked.",
    "denied": "Discogs authorisation was declined.",
    "failed": "Discogs could not be connected",
    "import-started": "Import started: your watch releases fill in as it goes.",
    "import-running": "An import is already running.",
    "disconnected": "Your Discogs account is disconnected; its tokens are deleted.",
}


async def context(
    session: AsyncSession, user_id: int, settings: Settings, request: Request
) -> dict[str, Any]:
    """What the preferences page shows of the Discogs account."""
    link = await integrations.link_of(session, user_id)
    imports = await session.scalars(
        select(WatchImportJob)
        .where(WatchImportJob.user_id == user_id)
        .order_by(WatchImportJob.id.desc())
        .limit(IMPORTS_SHOWN)
    )
    outcome = request.query_params.get("discogs")
    message = OUTCOMES.get(outcome or "")
    if message and outcome == "failed" and request.query_params.get("reason"):
        message = f"{message}: {request.query_params['reason']}"
    return {
        "link": link,
        "imports": list(imports),
        "oauth_available": bool(settings.discogs_consumer_key and settings.discogs_consumer_secret),
        "outcome": message,
        "outcome_failed": outcome in ("failed", "denied"),
    }


def _back(outcome: str, reason: str | None = None) -> Response:
    query = {"discogs": outcome} | ({"reason": reason[:200]} if reason else {})
    return RedirectResponse(f"{BACK}?{urlencode(query)}", status_code=303)


@router.post("/oauth")
async def start_oauth(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: CsrfWatcherDep
) -> Response:
    """Off to Discogs to approve; Discogs sends the browser back to the API's callback."""
    assert user.user_id is not None
    settings = runtime.settings
    configured = settings.discogs_oauth_callback_url
    callback = str(configured) if configured else str(request.url_for("discogs_oauth_return"))
    try:
        box = integrations.sealer(settings)
        account = await integrations.discogs_account(runtime.catalog)
        _, token = await integrations.begin_oauth(
            session, account, box, user.user_id, integrations.DEFAULT_SCOPES, callback
        )
    except (AppError, ProviderError) as exc:
        return _back("failed", str(exc))
    return RedirectResponse(authorize_url(str(settings.discogs_site_url), token), 303)


@router.post("/connect")
async def connect(
    session: SessionDep,
    runtime: RuntimeDep,
    user: CsrfWatcherDep,
    username: Annotated[str, Form(min_length=1, max_length=255)],
    token: Annotated[str, Form(max_length=512)] = "",
) -> Response:
    """Link by username, with a personal access token or without (public lists only)."""
    assert user.user_id is not None
    username = username.strip()
    if not username or any(char.isspace() or char == "/" for char in username):
        return _back("failed", "a Discogs username has no spaces or slashes")
    token = token.strip()
    try:
        box = integrations.sealer(runtime.settings) if token else None
    except AppError as exc:
        return _back("failed", str(exc))
    await integrations.save_link(
        session,
        user.user_id,
        username,
        auth="personal" if token else "none",
        token=token or None,
        box=box,
    )
    return _back("linked")


@router.post("/import")
async def start_import(
    session: SessionDep,
    runtime: RuntimeDep,
    user: CsrfWatcherDep,
    source: Annotated[str, Form()] = "both",
) -> Response:
    assert user.user_id is not None
    if source not in ("wantlist", "collection", "both"):
        return _back("failed", "choose the wantlist, the collection or both")
    try:
        _, created = await integrations.start_import(
            session,
            user.user_id,
            source,  # type: ignore[arg-type]
            runtime.settings.catalog_queue,
        )
    except AppError as exc:
        return _back("failed", str(exc))
    return _back("import-started" if created else "import-running")


@router.post("/disconnect")
async def disconnect(session: SessionDep, user: CsrfWatcherDep) -> Response:
    assert user.user_id is not None
    await integrations.disconnect(session, user.user_id)
    return _back("disconnected")
