"""Fleet routes: seed 004's ``/dispatch`` and ``/assets-downloaded`` (also under
``/api/v1/rescue``), node registration, asset imports (JSON, CSV, the priorizer) and
monitoring.

A node authenticates with its token (``X-Node-Token`` or ``Authorization: Bearer``); an
API key with the ``write`` scope may act for a node it names (seed 004's clients sent only
a ``node_id``), registering it on first use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
import structlog
from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select, update

from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import (
    ERROR_RESPONSES,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from dispatch.fleet import assets as asset_store
from dispatch.fleet import monitor
from dispatch.fleet.service import Assigned, Reported, Settled, assign, settle
from dispatch.models import Job, Node, RescueAsset, RescueRanking
from dispatch.queue import nodes
from dispatch.queue.node_routes import heartbeat_seconds
from dispatch.runtime import Runtime
from dispatch.security.deps import Authorize, ReadKey, WriteKey, presented_key
from dispatch.security.scopes import Scope

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/rescue", tags=["fleet"], responses=ERROR_RESPONSES)
seed_router = APIRouter(tags=["fleet (seed 004)"], responses=ERROR_RESPONSES)

_node_token = APIKeyHeader(name="X-Node-Token", scheme_name="NodeToken", auto_error=False)
_write_key = Authorize(Scope.WRITE, group="nodes")
_register_key = Authorize(Scope.NODES)
NO_ASSETS = "No available assets matching the criteria"  # seed 004's 422
# A petabyte: more than any volunteer's disk, and its megabytes stay a 64-bit integer.
MAX_FREE_SPACE_GB = 1_000_000


class DispatchRequest(BaseModel):
    """Seed 004's request (``node_id`` may be a string or an integer), plus ``limit``."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)
    free_space_gb: float = Field(ge=0, le=MAX_FREE_SPACE_GB)
    node_id: str | int | None = None
    limit: int | None = Field(default=None, ge=1, le=100)

    @field_validator("free_space_gb")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of gigabytes")
        return value


class NodeRegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    free_space_gb: float = Field(default=0, ge=0, le=MAX_FREE_SPACE_GB)
    max_in_flight: int | None = Field(default=None, ge=1, le=1000)
    version: str | None = Field(default=None, max_length=64)


class NodeRegistered(BaseModel):
    node_id: str
    token: str
    name: str
    description: str
    lease_seconds: float
    heartbeat_seconds: float
    heartbeat_url: str


class AssetOut(BaseModel):
    """Seed 004's ``AssetModel`` with Dispatch's ids and lease (for a dispatched copy)."""

    asset_id: int
    ds_id: str
    res_id: str
    name: str
    path: str
    url: str
    size_mb: float | None
    priority: int
    checksum: str | None
    magnet_link: str | None = None
    status: str | None = None
    copy_id: int | None = None
    replica: int | None = None
    job_id: int | None = None
    lease_token: str | None = None
    lease_expires_at: datetime | None = None


class DispatchOut(BaseModel):
    status: str = "success"
    message: str = "Request received and processed"
    received_data: dict[str, Any]
    asset: list[AssetOut]
    node_id: str
    allocated_size_mb: float
    lease_seconds: float
    heartbeat_seconds: float
    heartbeat_url: str


class ReportedAsset(BaseModel):
    """An asset of seed 004's ``RescuesRequest`` plus the lease it was handed with."""

    model_config = ConfigDict(extra="ignore")

    asset_id: int | str | None = None
    job_id: int | None = None
    lease_token: str | None = Field(default=None, max_length=64)
    url: str | None = Field(default=None, max_length=8000)
    magnet_link: str | None = Field(default=None, max_length=8000)
    status: Literal["SUCCESS", "FAIL", "success", "fail"]
    checksum: str | None = Field(default=None, max_length=200)
    bytes: int | None = Field(default=None, ge=0)
    message: str | None = Field(default=None, max_length=2000)


class RescuesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rescuer_id: str | int | None = None
    message: str = Field(default="", max_length=2000)
    assets: list[ReportedAsset] = Field(min_length=1, max_length=1000)


class RescueRow(BaseModel):
    """Seed 004's ``{asset_id, rescuer_id, magnet_link, status}``."""

    asset_id: int | None
    rescuer_id: str
    magnet_link: str | None
    status: str


class ReportResult(BaseModel):
    index: int
    asset_id: int | None
    job_id: int | None
    outcome: str
    reason: str | None = None


class RescuesResponse(BaseModel):
    status: str
    message: str
    results: list[ReportResult]
    updated_rescues: list[RescueRow]
    inserted_rescues: list[RescueRow]
    not_committed_rescues: list[RescueRow]


class ImportOut(BaseModel):
    created: int
    updated: int
    unchanged: int
    copies_added: int
    asset_ids: list[int]
    source: str = "api"
    refused: list[dict[str, Any]] = []


# Who is calling ---------------------------------------------------------------------------


TOKEN_CACHE_SECONDS = 60.0
TOKEN_CACHE_SIZE = 10_000
_known_tokens: dict[str, tuple[str, float]] = {}  # token digest -> (node id, until)


async def _node_by_token(runtime: Runtime, token: str) -> str:
    """The node a token belongs to; remembered for a minute (a thousand nodes polling would
    otherwise add a query to most requests). A node's token is never reissued, and a node
    deleted or disabled meanwhile is still refused: the dispatch locks its row, and a
    report needs the node's live lease."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    now = time.monotonic()
    known = _known_tokens.get(digest)
    if known is not None and known[1] > now:
        return known[0]
    async with runtime.database.session(write=False) as session:
        node = await nodes.authenticate(session, token)
    if node is None:
        raise Unauthorized("Unknown node token")
    if len(_known_tokens) >= TOKEN_CACHE_SIZE:
        _known_tokens.clear()
    _known_tokens[digest] = (node.id, now + TOKEN_CACHE_SECONDS)
    return node.id


async def _acting_node(
    request: Request,
    response: Response,
    runtime: Runtime,
    node_token: str | None,
    key: str | None,
    named: str | None,
    body: DispatchRequest | None = None,
) -> str:
    """The node making the call: its token's, or (a ``write`` key) the one it names."""
    token = (node_token or "").strip() or key
    if token and token.startswith(nodes.TOKEN_PREFIX):
        node_id = await _node_by_token(runtime, token)
        state = await runtime.limiter.hit("nodes", f"node:{node_id}")
        if state is not None:
            response.headers.update(state.headers())
        if named is not None and named != node_id:
            raise Forbidden("This token belongs to another node", details={"node_id": node_id})
        return node_id
    await _write_key(request, response, runtime, key)
    if not named:
        raise ValidationFailed("node_id is required when an API key acts for a node")
    async with runtime.database.session() as session:
        if await session.get(Node, named) is None:
            if len(named) > 40:
                raise ValidationFailed("node_id is at most 40 characters")
            created = Node(
                id=named,
                name=(body.name if body and body.name else named)[:200],
                description=body.description if body else None,
                token_hash=f"unissued:{named}",
                token_prefix="",
                capacity=0,
                queues=[runtime.settings.rescue_queue],
                max_in_flight=runtime.settings.rescue_node_max_in_flight,
            )
            session.add(created)
    return named


def _node_id(value: str | int | None) -> str | None:
    return None if value is None else str(value).strip() or None


# Nodes ----------------------------------------------------------------------------------


def _heartbeat_url(runtime: Runtime, node_id: str) -> str:
    return f"{runtime.settings.api_v1_prefix}/nodes/{node_id}/heartbeat"


@router.post("/nodes", status_code=status.HTTP_201_CREATED, summary="Register a rescue node")
async def register_node(
    body: NodeRegisterIn,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    session: SessionDep,
    key: Annotated[str | None, Depends(presented_key)],
) -> NodeRegistered:
    """A node of the rescue queue; its token is shown once (scope: nodes)."""
    await _register_key(request, response, runtime, key)
    settings = runtime.settings
    spec = nodes.Registration(
        name=body.name,
        capacity=math.floor(body.free_space_gb * 1024),
        queues=[settings.rescue_queue],
        max_in_flight=body.max_in_flight or settings.rescue_node_max_in_flight,
        version=body.version,
    )
    node, token = await nodes.register(session, spec)
    node.description = body.description or None
    return NodeRegistered(
        node_id=node.id,
        token=token,
        name=node.name,
        description=body.description,
        lease_seconds=settings.node_lease_seconds,
        heartbeat_seconds=heartbeat_seconds(runtime),
        heartbeat_url=_heartbeat_url(runtime, node.id),
    )


# Seed 004's dispatch ----------------------------------------------------------------------


def _asset_out(item: Assigned) -> AssetOut:
    return AssetOut.model_validate(item, from_attributes=True)  # the same field names


async def _dispatch(
    body: DispatchRequest,
    request: Request,
    response: Response,
    runtime: Runtime,
    node_token: str | None,
    key: str | None,
) -> DispatchOut | None:
    named = _node_id(body.node_id)
    node_id = await _acting_node(request, response, runtime, node_token, key, named, body)
    settings = runtime.settings
    state = await runtime.limiter.hit("node_claim", f"node:{node_id}")
    if state is not None:
        response.headers.update(state.headers())
    free_mb = math.floor(body.free_space_gb * 1024)
    handed = await assign(
        runtime.database,
        settings,
        node_id,
        free_mb,
        body.limit or 1000,  # the node's max_in_flight caps it
        name=body.name[:200] or None,
        description=body.description or None,
    )
    if not handed:
        return None
    out = [_asset_out(item) for item in handed]
    return DispatchOut(
        received_data=body.model_dump(exclude={"limit"}),
        asset=out,
        node_id=node_id,
        allocated_size_mb=float(
            sum(asset_store.needed_mb(item.size_mb, settings) for item in handed)
        ),
        lease_seconds=settings.node_lease_seconds,
        heartbeat_seconds=heartbeat_seconds(runtime),
        heartbeat_url=_heartbeat_url(runtime, node_id),
    )


@router.post(
    "/dispatch",
    response_model=DispatchOut,
    responses={204: {"description": "Nothing fits or is due: ask again later (Retry-After)"}},
    summary="Seed 004's dispatch: copies that fit the node's free space, with their leases",
)
async def dispatch(
    body: DispatchRequest,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    node_token: Annotated[str | None, Depends(_node_token)],
    key: Annotated[str | None, Depends(presented_key)],
) -> DispatchOut | Response:
    out = await _dispatch(body, request, response, runtime, node_token, key)
    if out is None:
        wait = str(round(heartbeat_seconds(runtime)))
        return Response(status_code=204, headers={**response.headers, "Retry-After": wait})
    return out


@seed_router.post(
    "/dispatch",
    response_model=DispatchOut,
    summary="Seed 004's /dispatch for existing clients (422 when nothing is available)",
)
async def seed_dispatch(
    body: DispatchRequest,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    node_token: Annotated[str | None, Depends(_node_token)],
    key: Annotated[str | None, Depends(presented_key)],
) -> DispatchOut:
    out = await _dispatch(body, request, response, runtime, node_token, key)
    if out is None:
        raise ValidationFailed(NO_ASSETS, code="no_assets")
    return out


# Seed 004's completion reports --------------------------------------------------------------


def _reported(index: int, item: ReportedAsset) -> Reported:
    asset_id = None
    if item.asset_id is not None and str(item.asset_id).strip().isdigit():
        asset_id = int(str(item.asset_id).strip())
    status_ = "SUCCESS" if item.status.upper() == "SUCCESS" else "FAIL"
    return Reported(
        index=index,
        status=status_,  # type: ignore[arg-type]
        asset_id=asset_id,
        job_id=item.job_id,
        lease_token=item.lease_token,
        url=item.url,
        magnet_link=item.magnet_link,
        checksum=item.checksum,
        bytes=item.bytes,
        message=item.message,
    )


def _row(settled: Settled, node_id: str, item: ReportedAsset) -> RescueRow:
    return RescueRow(
        asset_id=settled.asset_id,
        rescuer_id=node_id,
        magnet_link=item.magnet_link,
        status=item.status.lower(),
    )


async def _report(
    body: RescuesRequest,
    request: Request,
    response: Response,
    runtime: Runtime,
    node_token: str | None,
    key: str | None,
) -> RescuesResponse:
    named = _node_id(body.rescuer_id)
    node_id = await _acting_node(request, response, runtime, node_token, key, named)
    results: list[ReportResult] = []
    inserted: list[RescueRow] = []
    updated: list[RescueRow] = []
    refused: list[RescueRow] = []
    for index, item in enumerate(body.assets):
        try:
            settled = await settle(runtime.database, node_id, _reported(index, item))
        except Exception as exc:  # one asset never spoils the others
            log.exception("fleet.report_failed", node_id=node_id, index=index)
            settled = Settled(index, "rejected", None, item.job_id, f"not recorded: {exc}")
        results.append(
            ReportResult(
                index=index,
                asset_id=settled.asset_id,
                job_id=settled.job_id,
                outcome=settled.outcome,
                reason=settled.reason,
            )
        )
        row = _row(settled, node_id, item)
        if settled.outcome == "rejected":
            refused.append(row)
        elif settled.outcome == "already_recorded":
            updated.append(row)
        else:
            inserted.append(row)
    bad = len(refused)
    return RescuesResponse(
        status="success" if not bad else ("partial" if bad < len(body.assets) else "failed"),
        message=f"{len(body.assets) - bad} of {len(body.assets)} assets recorded",
        results=results,
        updated_rescues=updated,
        inserted_rescues=inserted,
        not_committed_rescues=refused,
    )


@router.post("/assets-downloaded", summary="Seed 004's completion report, settled per asset")
async def assets_downloaded(
    body: RescuesRequest,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    node_token: Annotated[str | None, Depends(_node_token)],
    key: Annotated[str | None, Depends(presented_key)],
) -> RescuesResponse:
    return await _report(body, request, response, runtime, node_token, key)


seed_router.add_api_route(
    "/assets-downloaded",
    assets_downloaded,
    methods=["POST"],
    summary="Seed 004's /assets-downloaded for existing clients",
)


# Assets ------------------------------------------------------------------------------------


def _import_out(
    done: asset_store.Imported, source: str, refused: list[dict[str, Any]] | None = None
) -> ImportOut:
    return ImportOut(**dataclasses.asdict(done), source=source, refused=refused or [])


def _refuse(refused: list[dict[str, Any]]) -> ValidationFailed:
    return ValidationFailed(
        f"{len(refused)} asset(s) are invalid; nothing was imported",
        details={"refused": refused},
    )


async def _import(
    session: SessionDep, runtime: Runtime, parsed: asset_store.Parsed, source: str
) -> ImportOut:
    if parsed.refused:
        raise _refuse(parsed.refused)
    done = await asset_store.upsert(session, parsed.assets, runtime.settings, source)
    return _import_out(done, source)


@router.post("/assets", status_code=status.HTTP_201_CREATED, summary="Import assets (JSON)")
async def import_assets(
    request: Request, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> ImportOut:
    """A list of seed 004's assets, or ``{"asset": [...]}`` (the priorizer's shape). All or
    nothing: one invalid asset (a malformed URL, say) is a 422 naming each refused item."""
    try:
        payload = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed(f"The body is not JSON: {exc}") from exc
    items = asset_store.items_of(payload)
    if items is None:
        raise ValidationFailed('Send a list of assets, or {"asset": [...]}')
    if not items or len(items) > 10_000:
        raise ValidationFailed("Send between 1 and 10,000 assets")
    return await _import(session, runtime, asset_store.parse_items(items), "api")


@router.post(
    "/assets/csv", status_code=status.HTTP_201_CREATED, summary="Import assets (CSV upload)"
)
async def import_csv(
    request: Request, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> ImportOut:
    """A CSV body whose header names ds_id, res_id, name, url (and path, size_mb, priority,
    checksum)."""
    try:
        text = (await request.body()).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed("The CSV is not UTF-8") from exc
    parsed = asset_store.parse_csv(text)
    if not parsed.assets and not parsed.refused:
        raise ValidationFailed("The CSV has no rows")
    return await _import(session, runtime, parsed, "csv")


@router.post("/assets/import", summary="Import the priorizer's ranking (its last good one if down)")
async def import_priorizer(session: SessionDep, runtime: RuntimeDep, _: WriteKey) -> ImportOut:
    settings = runtime.settings
    if settings.priorizer_url is None:
        raise ValidationFailed("PRIORIZER_URL is not set", code="priorizer_unconfigured")
    import httpx

    url = str(settings.priorizer_url).rstrip("/") + "/ranking"
    source, error = "priorizer", None
    try:
        async with httpx.AsyncClient(timeout=settings.priorizer_timeout_seconds) as client:
            answer = await client.post(url)
        answer.raise_for_status()
        payload = answer.json()
        if asset_store.items_of(payload) is None:
            raise ValueError("the ranking has no asset list")
    except (httpx.HTTPError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        cached = await session.scalar(
            select(RescueRanking).order_by(RescueRanking.fetched_at.desc()).limit(1)
        )
        if cached is None:
            raise ValidationFailed(
                f"The priorizer failed ({error}) and no earlier ranking is cached",
                code="priorizer_unavailable",
            ) from exc
        payload, source = cached.payload, "cache"
    else:
        session.add(RescueRanking(url=url, payload={"asset": asset_store.items_of(payload)}))
    items = asset_store.items_of(payload) or []
    parsed = asset_store.parse_items(items)
    # The priorizer's invalid items are skipped (seed 004 did too), not a reason to refuse all.
    done = await asset_store.upsert(session, parsed.assets, runtime.settings, "priorizer")
    if error:
        log.warning("fleet.priorizer_down", error=error, using="cache")
    return _import_out(done, source, parsed.refused)


class AssetProgress(BaseModel):
    asset_id: int
    ds_id: str
    res_id: str
    name: str
    url: str
    size_mb: float | None
    priority: int
    checksum: str | None
    replication_target: int
    copies_rescued: int
    copies_in_flight: int
    nodes: list[str]
    at_risk: bool


def _progress(row: tuple[RescueAsset, int, int, list[str]]) -> AssetProgress:
    asset, done, busy, holders = row
    return AssetProgress(
        asset_id=asset.id,
        ds_id=asset.ds_id,
        res_id=asset.res_id,
        name=asset.name,
        url=asset.url,
        size_mb=asset.size_mb,
        priority=asset.priority,
        checksum=asset.checksum,
        replication_target=asset.replication_target,
        copies_rescued=done,
        copies_in_flight=busy,
        nodes=holders,
        at_risk=done < asset.replication_target,
    )


@router.get("/assets", summary="Assets by priority with their copies (scope: read)")
async def list_assets(
    session: SessionDep,
    _: ReadKey,
    at_risk: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[AssetProgress]:
    """``at_risk=true``: only assets with fewer rescued copies than their target."""
    rows = await monitor.asset_rows(session, at_risk=at_risk, limit=limit, offset=offset)
    return [_progress(row) for row in rows]


class CopyOut(BaseModel):
    replica: int
    state: str
    node_id: str | None
    job_id: int | None
    job_state: str | None
    assigned_at: datetime | None
    rescued_at: datetime | None
    magnet_link: str | None
    checksum: str | None
    bytes: int | None
    assignments: int


def copy_out(found: monitor.CopyState) -> CopyOut:
    copy = found.copy
    return CopyOut(
        replica=copy.replica,
        state=found.state,
        node_id=found.node_id,
        job_id=copy.job_id,
        job_state=found.job_state,
        assigned_at=copy.assigned_at,
        rescued_at=copy.rescued_at,
        magnet_link=copy.magnet_link,
        checksum=copy.checksum,
        bytes=copy.bytes,
        assignments=copy.assignments,
    )


class AssetDetail(AssetProgress):
    copies: list[CopyOut]


@router.get("/assets/{asset_id}", summary="One asset and each of its copies (scope: read)")
async def get_asset(asset_id: int, session: SessionDep, _: ReadKey) -> AssetDetail:
    asset = await session.get(RescueAsset, asset_id)
    if asset is None:
        raise NotFound(f"Asset {asset_id} does not exist")
    copies = [copy_out(found) for found in await monitor.asset_copies(session, asset_id)]
    done = sum(1 for copy in copies if copy.state == "rescued")
    busy = sum(1 for copy in copies if copy.state == "assigned")
    holders = sorted({copy.node_id for copy in copies if copy.node_id and copy.state != "waiting"})
    return AssetDetail(**_progress((asset, done, busy, holders)).model_dump(), copies=copies)


@router.delete("/assets/{asset_id}", summary="Retire an asset: its waiting copies are cancelled")
async def retire_asset(asset_id: int, session: SessionDep, _: WriteKey) -> AssetProgress:
    asset = await session.get(RescueAsset, asset_id)
    if asset is None:
        raise NotFound(f"Asset {asset_id} does not exist")
    asset.status, asset.updated_at = "retired", utcnow()
    await session.execute(
        update(Job)
        .where(Job.spread_key == f"asset:{asset_id}", Job.state.in_(("available", "scheduled")))
        .values(state="cancelled", finished_at=utcnow())
    )
    return _progress((asset, 0, 0, []))


# Monitoring ----------------------------------------------------------------------------------


class OverviewOut(BaseModel):
    assets: int
    copies_wanted: int
    copies_rescued: int
    copies_in_flight: int
    assets_complete: int
    assets_at_risk: int
    assets_without_copy: int
    bytes_rescued: int
    bytes_last_hour: int
    nodes: dict[str, int]
    nodes_silent: int
    replication_target: int


@router.get("/overview", summary="Progress of the whole fleet (scope: read)")
async def overview(session: SessionDep, runtime: RuntimeDep, _: ReadKey) -> OverviewOut:
    found = await monitor.overview(session, runtime.settings)
    return OverviewOut(
        **dataclasses.asdict(found), replication_target=runtime.settings.rescue_replication_target
    )


class NodeStats(BaseModel):
    node_id: str
    name: str
    description: str | None
    status: str
    silent: bool
    last_seen_at: datetime
    free_mb: int
    in_flight: int
    max_in_flight: int
    rescued: int
    failed: int
    bytes_rescued: int
    bytes_per_hour: int
    bytes_per_day: int


@router.get("/nodes", summary="Every node's progress and throughput (scope: read)")
async def node_stats(session: SessionDep, runtime: RuntimeDep, _: ReadKey) -> list[NodeStats]:
    rows = await monitor.node_rows(session, runtime.settings, utcnow())
    return [
        NodeStats(
            node_id=row.node.id,
            name=row.node.name,
            description=row.node.description,
            status=row.node.status,
            silent=row.silent,
            last_seen_at=row.node.last_seen_at,
            free_mb=max(0, row.node.capacity - row.capacity_used),
            in_flight=row.in_flight,
            max_in_flight=row.node.max_in_flight,
            rescued=row.rescued,
            failed=row.failed,
            bytes_rescued=row.bytes_rescued,
            bytes_per_hour=row.bytes_last_hour,
            bytes_per_day=row.bytes_last_day,
        )
        for row in rows
    ]
