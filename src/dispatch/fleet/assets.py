"""Assets to rescue: validation in seed 004's shape, imports, and their copies as jobs.

An asset is identified by its dataset and resource ids (strings or integers, as seed 004's
mock data and its database disagreed). Its URL is http(s), ftp, or a magnet link, checked
as the seed did. Importing an asset (by API, CSV or the priorizer's ranking) creates or
updates it and makes sure it has ``replication_target`` copy slots, each a queue job on
``RESCUE_QUEUE`` that needs the asset's size of a node's free space (an unknown size
counts as ``RESCUE_UNKNOWN_SIZE_MB``, never as free) and shares the asset's spread key,
so no node gets two copies of one asset.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.models import Job, RescueAsset, RescueCopy
from dispatch.queue import service as queue
from dispatch.queue.service import JobSpec

COPY_KIND = "rescue.copy"
MAX_PRIORITY = 1_000
MAX_COPIES = 20
LOOKUP_CHUNK = 500
# Seed 004's rule: http(s) URLs, ftp://, or magnet:?xt=urn:<namespace>:<1-40 alphanumerics>.
MAGNET = re.compile(r"^magnet:\?xt=urn:[A-Za-z0-9]+:[A-Za-z0-9]{1,40}(&.*)?$")
CHECKSUM = re.compile(r"^(sha256|sha1|md5):[0-9a-fA-F]+$")
CSV_FIELDS = ("ds_id", "res_id", "name", "path", "url", "size_mb", "priority", "checksum")


def valid_url(value: str) -> bool:
    """An http(s) or ftp URL naming a host, or a magnet link (seed 004's rule)."""
    value = value.strip()
    if not value or any(char.isspace() for char in value):
        return False
    if value.lower().startswith("magnet:"):
        return bool(MAGNET.match(value))
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https", "ftp") and bool(parts.hostname) and port_ok


class AssetIn(BaseModel):
    """Seed 004's ``BaseAssetModel`` (ids may be strings or integers), plus a checksum and
    a replication target of its own."""

    model_config = ConfigDict(extra="ignore")

    ds_id: str
    res_id: str
    asset_id: str | int | None = None  # seed 004's; Dispatch's own id is answered back
    name: str = Field(min_length=1, max_length=500)
    path: str = Field(default="", max_length=1000)
    url: str = Field(min_length=1, max_length=8000)
    size_mb: float | None = Field(default=None, ge=0)
    priority: int = Field(default=100, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    checksum: str | None = Field(default=None, max_length=200)
    replication_target: int | None = Field(default=None, ge=1, le=MAX_COPIES)

    @field_validator("ds_id", "res_id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("must be a string or an integer id")
        text = str(value).strip()
        if not text or len(text) > 100:
            raise ValueError("must be a non-empty id of at most 100 characters")
        return text

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not valid_url(value):
            raise ValueError("must be an http(s) URL, an ftp:// URL or a magnet:?xt=urn:… link")
        return value.strip()

    @field_validator("size_mb")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number of megabytes")
        return value

    @field_validator("checksum")
    @classmethod
    def _checksum(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not CHECKSUM.match(value.strip()):
            raise ValueError("must read sha256:<hex> (or sha1:, md5:)")
        algorithm, _, digest = value.strip().partition(":")
        return f"{algorithm.lower()}:{digest.lower()}"


@dataclass
class Parsed:
    """Assets read from a request, and the items refused with why."""

    assets: list[AssetIn] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)


def parse_items(items: Sequence[Any]) -> Parsed:
    parsed = Parsed()
    for index, item in enumerate(items):
        try:
            parsed.assets.append(AssetIn.model_validate(item))
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            parsed.refused.append({"index": index, "errors": errors})
    return parsed


def items_of(payload: Any) -> list[Any] | None:
    """The assets of a bulk body: a list, or seed 004's ``{"asset": [...]}`` / ``{"assets": …}``."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        for key in ("asset", "assets"):
            if isinstance(payload.get(key), list):
                return list(payload[key])
    return None


def parse_csv(text: str) -> Parsed:
    """A CSV with a header naming (at least) name and url, and ds_id / res_id."""
    reader = csv.DictReader(io.StringIO(text))
    rows: list[dict[str, Any]] = []
    for row in reader:
        cleaned = {
            key.strip().lower(): (value.strip() if isinstance(value, str) else value)
            for key, value in row.items()
            if key
        }
        rows.append({key: value for key, value in cleaned.items() if value not in ("", None)})
    return parse_items(rows)


def needed_mb(size_mb: float | None, settings: Settings) -> int:
    """What a copy takes of a node's free space: its size, or the conservative guess."""
    return math.ceil(size_mb if size_mb is not None else settings.rescue_unknown_size_mb)


def queue_priority(priority: int, replica: int) -> int:
    """A copy's place in the queue: its asset's priority, then its replica number, so every
    asset of one priority gets a first copy (each on some node) before any gets a second."""
    return priority * MAX_COPIES + replica - 1


def copy_spec(asset: RescueAsset, replica: int, settings: Settings) -> JobSpec:
    return JobSpec(
        kind=COPY_KIND,
        args={"asset_id": asset.id, "replica": replica},
        queue=settings.rescue_queue,
        priority=queue_priority(asset.priority, replica),
        # Each node that fails it is excluded; others go on trying. No dedupe key: the copy
        # row's unique (asset, replica) already keeps one job per slot, and plain jobs are
        # inserted in bulk.
        max_attempts=100,
        required_capacity=needed_mb(asset.size_mb, settings),
        spread_key=f"asset:{asset.id}",
    )


@dataclass(frozen=True, slots=True)
class Imported:
    created: int
    updated: int
    unchanged: int
    copies_added: int
    asset_ids: list[int]


_FIELDS = ("name", "path", "url", "size_mb", "priority", "checksum")


async def upsert(
    session: AsyncSession, assets: Iterable[AssetIn], settings: Settings, source: str
) -> Imported:
    """Create or update each asset (by dataset and resource id) and top up its copies."""
    incoming = {(asset.ds_id, asset.res_id): asset for asset in assets}  # the last one wins
    if not incoming:
        return Imported(0, 0, 0, 0, [])
    keys = list(incoming)
    existing: dict[tuple[str, str], RescueAsset] = {}
    for start in range(0, len(keys), LOOKUP_CHUNK):  # a long IN list overflows PostgreSQL
        chunk = keys[start : start + LOOKUP_CHUNK]
        for found in await session.scalars(
            select(RescueAsset).where(tuple_(RescueAsset.ds_id, RescueAsset.res_id).in_(chunk))
        ):
            existing[(found.ds_id, found.res_id)] = found
    now = utcnow()
    created = updated = unchanged = 0
    touched: list[RescueAsset] = []
    resized: set[int] = set()  # assets whose waiting copies need a new size or priority
    for key, item in incoming.items():
        target = item.replication_target or settings.rescue_replication_target
        row = existing.get(key)
        values = {name: getattr(item, name) for name in _FIELDS}
        if row is None:
            row = RescueAsset(
                ds_id=key[0],
                res_id=key[1],
                replication_target=target,
                source=source,
                created_at=now,
                updated_at=now,
                **values,
            )
            session.add(row)
            created += 1
        else:
            changed = {name: value for name, value in values.items() if getattr(row, name) != value}
            if item.replication_target is not None and row.replication_target != target:
                changed["replication_target"] = target
            if row.status != "active":
                changed["status"] = "active"
            if changed:
                for name, value in changed.items():
                    setattr(row, name, value)
                row.updated_at = now
                updated += 1
                if {"size_mb", "priority"} & changed.keys():
                    resized.add(row.id)
            else:
                unchanged += 1
        touched.append(row)
    await session.flush()
    added = await top_up(session, touched, settings, resized)
    return Imported(created, updated, unchanged, added, [row.id for row in touched])


async def top_up(
    session: AsyncSession,
    assets: Sequence[RescueAsset],
    settings: Settings,
    resized: set[int] | frozenset[int] = frozenset(),
) -> int:
    """Give each asset its copy slots (one queue job each) and keep waiting jobs in step
    with the asset's size and priority; how many slots were added."""
    if not assets:
        return 0
    by_id = {asset.id: asset for asset in assets}
    have: dict[int, set[int]] = {asset.id: set() for asset in assets}
    ids = list(by_id)
    for start in range(0, len(ids), LOOKUP_CHUNK):
        for asset_id, replica in await session.execute(
            select(RescueCopy.asset_id, RescueCopy.replica).where(
                RescueCopy.asset_id.in_(ids[start : start + LOOKUP_CHUNK])
            )
        ):
            have[asset_id].add(replica)
    new_copies: list[tuple[RescueAsset, int]] = [
        (asset, replica)
        for asset in assets
        if asset.status == "active"
        for replica in range(1, asset.replication_target + 1)
        if replica not in have[asset.id]
    ]
    if new_copies:
        enqueued = await queue.enqueue_many(
            session, [copy_spec(asset, replica, settings) for asset, replica in new_copies]
        )
        for (asset, replica), job in zip(new_copies, enqueued, strict=True):
            session.add(RescueCopy(asset_id=asset.id, replica=replica, job_id=job.job_id))
    # Waiting copies follow a changed size or priority.
    waiting = await session.execute(
        select(Job.id, RescueCopy.asset_id, RescueCopy.replica)
        .join(RescueCopy, RescueCopy.job_id == Job.id)
        .where(RescueCopy.asset_id.in_(resized), Job.state.in_(("available", "scheduled")))
    )
    for job_id, asset_id, replica in waiting.all():
        asset = by_id[asset_id]
        await session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state.in_(("available", "scheduled")))
            .values(
                required_capacity=needed_mb(asset.size_mb, settings),
                priority=queue_priority(asset.priority, replica),
            )
        )
    await session.flush()
    return len(new_copies)
