"""Seed 003's watch releases: one Discogs release (or any pressing of its master) at or under
a target price, in at least a given condition.

A watch release is a rule of kind ``release`` on the ``discogs`` source: it is matched,
polled, evented and notified like any rule, and seed 003's ``target_price`` and
``min_condition`` are really used (the seed stored them and ignored them when matching).
``/api/v1/watch-releases`` keeps seed 003's request and response shapes.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import ERROR_RESPONSES, ValidationFailed
from dispatch.models import WatchRule
from dispatch.watch import rules
from dispatch.watch.deps import RulesCaller
from dispatch.watch.matching import GRADES, grade
from dispatch.watch.pages import PageDep
from dispatch.watch.schemas import RuleQuery, WatchRuleCreate, WatchRulePatch

router = APIRouter(tags=["watch releases"], responses=ERROR_RESPONSES)
KIND = "release"
SOURCE = "discogs"
MatchMode = Literal["exact_release", "master_release"]


class ReleaseFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    discogs_master_id: int | None = Field(default=None, ge=1)
    match_mode: MatchMode = "exact_release"
    artist: str | None = Field(default=None, max_length=300)
    year: int | None = Field(default=None, ge=1800, le=2100)
    target_price: Decimal | None = Field(default=None, ge=0, max_digits=14)
    currency: str = Field(default="USD", pattern=r"^[A-Za-z]{3}$")
    min_condition: str | None = Field(default=None, max_length=40)
    is_active: bool = True

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("min_condition")
    @classmethod
    def _grade(cls, value: str | None) -> str | None:
        if value is not None and grade(value) is None:
            raise ValueError(f"min_condition must be one of {', '.join(GRADES)}")
        return value


class WatchReleaseCreate(ReleaseFields):
    discogs_release_id: int = Field(ge=1)
    title: str = Field(min_length=1, max_length=300)

    @model_validator(mode="after")
    def _master_mode(self) -> WatchReleaseCreate:
        if self.match_mode == "master_release" and self.discogs_master_id is None:
            raise ValueError("discogs_master_id is required with match_mode master_release")
        return self


class WatchReleasePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    discogs_release_id: int | None = Field(default=None, ge=1)
    discogs_master_id: int | None = Field(default=None, ge=1)
    match_mode: MatchMode | None = None
    title: str | None = Field(default=None, min_length=1, max_length=300)
    artist: str | None = Field(default=None, max_length=300)
    year: int | None = Field(default=None, ge=1800, le=2100)
    target_price: Decimal | None = Field(default=None, ge=0, max_digits=14)
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    min_condition: str | None = Field(default=None, max_length=40)
    is_active: bool | None = None


class WatchReleaseOut(BaseModel):
    id: int
    user_id: int
    discogs_release_id: int
    discogs_master_id: int | None
    match_mode: str
    title: str
    artist: str | None
    year: int | None
    target_price: float | None
    currency: str
    min_condition: str | None
    is_active: bool
    created_at: datetime
    updated_at: datetime


def release_query(body: WatchReleaseCreate) -> dict[str, Any]:
    """The rule's query: the release's ids and terms, the target price as ``max_price``."""
    query: dict[str, Any] = {
        "sources": [SOURCE],
        "release_id": body.discogs_release_id,
        "master_id": body.discogs_master_id,
        "match_mode": body.match_mode,
        "title": body.title,
        "artist": body.artist,
        "year": body.year,
        "currency": body.currency,
        "min_condition": body.min_condition,
        "max_price": float(body.target_price) if body.target_price is not None else None,
    }
    return {key: value for key, value in query.items() if value is not None}


def release_out(rule: WatchRule) -> WatchReleaseOut:
    q = rule.query
    return WatchReleaseOut(
        id=rule.id,
        user_id=rule.user_id,
        discogs_release_id=int(q["release_id"]),
        discogs_master_id=q.get("master_id"),
        match_mode=q.get("match_mode", "exact_release"),
        title=q.get("title", rule.name),
        artist=q.get("artist"),
        year=q.get("year"),
        target_price=q.get("max_price"),
        currency=q.get("currency", "USD"),
        min_condition=q.get("min_condition"),
        is_active=rule.is_active,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


def _as_rule(body: WatchReleaseCreate) -> WatchRuleCreate:
    return WatchRuleCreate(
        name=body.title[:120],
        query=RuleQuery(sources=[SOURCE]),
        is_active=body.is_active,
    )


async def create_release_rule(
    session: AsyncSession,
    user_id: int,
    body: WatchReleaseCreate,
    enabled: Collection[str],
    origin: dict[str, Any] | None = None,
) -> WatchRule:
    """A watch release for ``user_id`` (the API's, and each new item of a Discogs import)."""
    return await rules.create_rule(
        session,
        user_id,
        _as_rule(body),
        enabled,
        kind=KIND,
        query=release_query(body),
        origin=origin,
    )


async def _enabled(runtime: Any) -> list[str]:
    """Every configured provider: a watch release may wait for Discogs to be enabled (its
    polls report the provider's state meanwhile, and listings found later still match)."""
    return list(await runtime.catalog.configs())


@router.post("/watch-releases", status_code=status.HTTP_201_CREATED)
async def create_release(
    body: WatchReleaseCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: RulesCaller,
    user_id: Annotated[int | None, Query(description="Admin keys: the user")] = None,
) -> WatchReleaseOut:
    rule = await create_release_rule(
        session, caller.acting_for(user_id), body, await _enabled(runtime)
    )
    return release_out(rule)


@router.get("/watch-releases")
async def list_releases(
    session: SessionDep,
    caller: RulesCaller,
    page: PageDep,
    response: Response,
    user_id: int | None = None,
    is_active: bool | None = None,
) -> list[WatchReleaseOut]:
    found = await rules.list_rules(session, caller.owner(user_id), page, is_active, kind=KIND)
    return [release_out(rule) for rule in page.trim(list(found), response)]


@router.get("/watch-releases/{release_id}")
async def get_release(release_id: int, session: SessionDep, caller: RulesCaller) -> WatchReleaseOut:
    return release_out(await rules.get_rule(session, caller, release_id, kind=KIND))


@router.patch("/watch-releases/{release_id}")
async def patch_release(
    release_id: int,
    body: WatchReleasePatch,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: RulesCaller,
) -> WatchReleaseOut:
    rule = await rules.get_rule(session, caller, release_id, kind=KIND)
    current = release_out(rule).model_dump()
    current.update(
        discogs_release_id=current["discogs_release_id"], target_price=current["target_price"]
    )
    changes = body.model_dump(exclude_unset=True)
    fields = {**current, **changes}
    try:
        merged = WatchReleaseCreate.model_validate(
            {k: v for k, v in fields.items() if k in WatchReleaseCreate.model_fields}
        )
    except ValidationError as exc:
        raise ValidationFailed(
            "Invalid watch release",
            details={"errors": exc.errors(include_url=False, include_input=False)},
        ) from exc
    patch = WatchRulePatch(name=merged.title[:120], is_active=merged.is_active)
    await rules.update_rule(session, rule, patch, await _enabled(runtime))
    rule.query = release_query(merged)
    return release_out(rule)


@router.delete("/watch-releases/{release_id}")
async def disable_release(
    release_id: int, session: SessionDep, caller: RulesCaller
) -> WatchReleaseOut:
    """Seed 003: DELETE disables the watch release and returns it."""
    rule = await rules.get_rule(session, caller, release_id, kind=KIND)
    return release_out(rules.disable_rule(session, rule, deleted=True))


@router.delete("/watch-releases/{release_id}/hard", status_code=status.HTTP_204_NO_CONTENT)
async def hard_delete_release(release_id: int, session: SessionDep, caller: RulesCaller) -> None:
    """Remove the watch release and its matches (as ``DELETE /watch-rules/{id}/hard``); one
    imported from Discogs is not created again by the next import."""
    rule = await rules.get_rule(session, caller, release_id, kind=KIND)
    await rules.hard_delete_rule(session, rule)
