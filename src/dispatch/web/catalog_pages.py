"""Admin UI pages for the catalogue: providers (configuration, health, sync now, requests),
product search and product detail with its offers and price history.

Each page calls the same service functions as the JSON API (``dispatch.catalog.routes``):
the provider list is ``overview.views``, an edit goes through ``ProviderUpdate`` and
``overview.edit``, "Sync now" enqueues ``run_spec`` in the request's transaction, and the
search builds the API's ``Filters``. Refused input comes back on the page with a 4xx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.catalog import overview, products, requests, service
from dispatch.catalog.provider import ProviderConfig
from dispatch.catalog.registry import OFFERS, REQUIRED_CREDENTIALS
from dispatch.catalog.schedule import run_spec
from dispatch.catalog.schemas import OfferOut, PricePointOut, ProductOut, ProviderUpdate
from dispatch.catalog.search import search
from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import BadRequest, NotFound
from dispatch.queue import service as queue
from dispatch.runtime import Runtime
from dispatch.web import catalog_forms as forms
from dispatch.web.auth import CsrfUserDep, UiUser, UiUserDep
from dispatch.web.gateway_forms import (
    FormInvalid,
    parse,
    pretty_json,
    refusal,
    values_from,
    values_from_form,
)
from dispatch.web.pages import page

router = APIRouter(prefix="/ui/catalog", include_in_schema=False)

REQUESTS_SHOWN = 50
PAGE_SIZE = 25
HISTORY_POINTS = 5000  # the chart's points; a hint says when a history has more
HISTORY_ROWS = 200  # the newest of them listed under the chart


@dataclass(frozen=True, slots=True)
class Notice:
    """What "Sync now" did: the job it queued (or found queued), or why it could not run."""

    provider: str
    job_id: int | None = None
    created: bool = True
    refusal: str | None = None


def _render(
    request: Request, user: UiUser, name: str, context: dict[str, Any], status: int = 200
) -> Response:
    helpers = {"user": user, "money": forms.money, "link": forms.web_link}
    return page(request, f"catalog/{name}", helpers | context, status)


def _provider_path(name: str) -> str:
    return f"/ui/catalog/providers/{quote(name, safe='')}"


def _credential_keys(config: ProviderConfig) -> list[str]:
    """Every credential the provider has or its kind needs, so a missing one can be typed."""
    return sorted({*config.credentials, *REQUIRED_CREDENTIALS.get(config.kind, ())})


async def _config(runtime: Runtime, name: str) -> ProviderConfig:
    config = (await runtime.catalog.configs()).get(name)
    if config is None:
        raise NotFound(f"No provider named {name!r}", details={"provider": name})
    return config


# Providers -----------------------------------------------------------------------------------


async def _providers_page(
    request: Request,
    session: AsyncSession,
    runtime: Runtime,
    user: UiUser,
    notice: Notice | None,
    status: int = 200,
) -> Response:
    views = await overview.views(runtime.catalog, session)
    return _render(request, user, "providers.html", {"providers": views, "notice": notice}, status)


def _notice(provider: str | None, queued: int | None, again: bool) -> Notice | None:
    if provider is None or queued is None:
        return None
    return Notice(provider, queued, created=not again)


@router.get("/providers", response_class=HTMLResponse)
async def providers_page(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: UiUserDep,
    provider: Annotated[str | None, Query(max_length=64)] = None,
    queued: Annotated[int | None, Query(ge=1)] = None,
    again: bool = False,
) -> Response:
    notice = _notice(provider, queued, again)
    return await _providers_page(request, session, runtime, user, notice)


def _submitted_options(values: dict[str, Any] | None, current: dict[str, Any]) -> str:
    """What the options textarea shows: the refused text as typed, else the stored options."""
    if values is not None and isinstance(values.get(forms.OPTIONS_FIELD), str):
        return str(values[forms.OPTIONS_FIELD])
    return pretty_json(current)


async def _provider_page(
    request: Request,
    session: AsyncSession,
    runtime: Runtime,
    user: UiUser,
    name: str,
    *,
    values: dict[str, Any] | None = None,
    exc: Exception | None = None,
    notice: Notice | None = None,
    status: int | None = None,
) -> Response:
    errors, refused = refusal(exc)
    view = await overview.view(runtime.catalog, session, name)
    config = await _config(runtime, name)
    context = {
        "p": view,
        "v": values or values_from(view.model_dump(), forms.PROVIDER),
        "credential_keys": _credential_keys(config),
        "credential_field": forms.credential_field,
        "options": pretty_json(view.options),
        "options_field": forms.OPTIONS_FIELD,
        "options_text": _submitted_options(values, view.options),
        "requests": await requests.recent(
            session, requests.Filters(provider=name), limit=REQUESTS_SHOWN
        ),
        "errors": errors,
        "notice": notice,
        "saved": request.query_params.get("saved") == "1",
    }
    return _render(request, user, "provider.html", context, status or refused)


@router.get("/providers/{name}", response_class=HTMLResponse)
async def provider_page(
    name: str,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: UiUserDep,
    queued: Annotated[int | None, Query(ge=1)] = None,
    again: bool = False,
) -> Response:
    notice = _notice(name, queued, again)
    return await _provider_page(request, session, runtime, user, name, notice=notice)


@router.post("/providers/{name}", response_class=HTMLResponse)
async def edit_provider(
    name: str, request: Request, session: SessionDep, runtime: RuntimeDep, user: CsrfUserDep
) -> Response:
    """Store what the admin changed; a blank credential keeps the stored secret."""
    current = await overview.view(runtime.catalog, session, name)
    config = await _config(runtime, name)
    form = await request.form()
    submitted = values_from_form(form, forms.PROVIDER)
    options_text = form.get(forms.OPTIONS_FIELD)
    if isinstance(options_text, str):
        submitted[forms.OPTIONS_FIELD] = options_text
    keys = _credential_keys(config)
    try:
        data = forms.provider_body(submitted, current.model_dump(), form, keys)
        changes = parse(ProviderUpdate, data).changes()
        if changes:
            await overview.edit(runtime.catalog, session, name, changes)
    except FormInvalid as exc:
        return await _provider_page(
            request, session, runtime, user, name, values=submitted, exc=exc
        )
    return RedirectResponse(f"{_provider_path(name)}?saved=1", status_code=303)


@router.post("/providers/{name}/sync", response_class=HTMLResponse)
async def sync_provider(
    name: str, request: Request, session: SessionDep, runtime: RuntimeDep, user: CsrfUserDep
) -> Response:
    """Enqueue the provider's run now, as ``POST /api/v1/providers/{name}/sync`` does."""
    config = await _config(runtime, name)
    from_detail = (await request.form()).get("back") == "detail"
    problem = service.usable(config)
    if problem is not None:
        notice = Notice(name, refusal=f"{name} cannot run: {problem.message}")
        if from_detail:
            return await _provider_page(
                request, session, runtime, user, name, notice=notice, status=409
            )
        return await _providers_page(request, session, runtime, user, notice, status=409)
    job = await queue.enqueue(session, run_spec(runtime.settings, name))
    target = _provider_path(name) if from_detail else "/ui/catalog/providers"
    query = {"provider": name, "queued": job.job_id} | ({} if job.created else {"again": "1"})
    return RedirectResponse(f"{target}?{urlencode(query)}", status_code=303)


# Products ------------------------------------------------------------------------------------


@router.get("/products", response_class=HTMLResponse)
async def products_page(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: UiUserDep
) -> Response:
    """Search with the API's filters; bad input is listed above the form, with a 4xx."""
    form = forms.SearchForm.of(request.query_params)
    known = sorted(await runtime.catalog.configs())
    items: list[ProductOut] = []
    following: str | None = None
    exc: Exception | None = None
    try:
        filters = form.filters(known)
        cursor = form.cursor or None
        found = await search(
            session, filters, sort=form.chosen_sort(), limit=PAGE_SIZE, cursor=cursor
        )
    except (FormInvalid, BadRequest) as refused:
        exc = refused
    else:
        items = [ProductOut.of(p) for p in found.items]
        following = form.page_url(found.next_cursor) if found.next_cursor else None
    errors, status = refusal(exc)
    context = {
        "form": form,
        "known": known,
        "sorts": forms.SORTS,
        "statuses": forms.STATUSES,
        "items": items,
        "next_url": following,
        "errors": errors,
    }
    return _render(request, user, "products.html", context, status)


@router.get("/products/{product_id}", response_class=HTMLResponse)
async def product_page(
    product_id: str, request: Request, session: SessionDep, user: UiUserDep
) -> Response:
    product = await products.get(session, product_id)
    offers = await products.offers_of(session, product)
    history = await products.history_of(session, product, limit=HISTORY_POINTS)
    siblings = await products.same_item(session, product)
    context = {
        "p": ProductOut.of(product),
        "is_offers": product.provider == OFFERS,
        "offers": [OfferOut.of(o, product.uid) for o in offers],
        "charts": forms.price_charts(history, utcnow()),
        "history": [PricePointOut.of(point) for point in reversed(history[-HISTORY_ROWS:])],
        "history_cut": len(history) >= HISTORY_POINTS,
        "same_item": [ProductOut.of(p) for p in siblings],
    }
    return _render(request, user, "product.html", context)
