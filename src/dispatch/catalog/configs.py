"""Provider configuration as stored: environment defaults, the admin's edits on top, state.

A provider's row records which fields the admin edited (``edited``); only those override
the environment, so a changed environment still reaches every field nobody edited.
Credentials and options merge key by key. Rows also carry the run state the API reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.catalog.provider import ProviderConfig
from dispatch.db.bulk import conflict_insert
from dispatch.models import CatalogProvider

EDITABLE = (
    "enabled",
    "base_url",
    "currency",
    "credentials",
    "options",
    "rate_per_minute",
    "schedule",
)


def merge(default: ProviderConfig, row: CatalogProvider | None) -> ProviderConfig:
    """The effective configuration: ``default`` with the row's edited fields on top."""
    if row is None or not row.edited:
        return default
    values: dict[str, Any] = {}
    for name in row.edited:
        if name == "credentials":
            values[name] = {**default.credentials, **row.credentials}
        elif name == "options":
            values[name] = {**default.options, **row.options}
        elif name in EDITABLE:
            values[name] = getattr(row, name)
    return dataclasses.replace(default, **values)


def _row_values(config: ProviderConfig, now: datetime) -> dict[str, Any]:
    return {
        "name": config.name,
        "kind": config.kind,
        "enabled": config.enabled,
        "base_url": config.base_url,
        "currency": config.currency,
        "credentials": {},
        "options": {},
        "rate_per_minute": config.rate_per_minute,
        "schedule": config.schedule,
        "edited": [],
        "last_result": {},
        "created_at": now,
        "updated_at": now,
    }


async def ensure_rows(
    session: AsyncSession, defaults: Mapping[str, ProviderConfig], now: datetime
) -> None:
    """Create the state row of every configured provider that has none yet."""
    rows = [_row_values(config, now) for config in defaults.values()]
    if rows:
        await session.execute(
            conflict_insert(session, CatalogProvider)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["name"])
        )


async def load(
    session: AsyncSession, defaults: Mapping[str, ProviderConfig]
) -> dict[str, tuple[ProviderConfig, CatalogProvider | None]]:
    """Every configured provider's effective configuration and its row (if any)."""
    rows = {row.name: row for row in await session.scalars(select(CatalogProvider))}
    return {
        name: (merge(config, rows.get(name)), rows.get(name)) for name, config in defaults.items()
    }


def apply_edit(
    row: CatalogProvider, changes: Mapping[str, Any], current: ProviderConfig, now: datetime
) -> None:
    """Store the admin's changes on the row and mark those fields edited.

    A credential set to "" or null is removed (the environment's value applies again);
    ``reset`` fields drop the edit altogether.
    """
    edited = set(row.edited or [])
    for name, value in changes.items():
        if name == "reset":
            for field in value or ():
                edited.discard(field)
            continue
        if name == "credentials":
            merged = {**row.credentials}
            for key, secret in (value or {}).items():
                if secret in (None, ""):
                    merged.pop(key, None)
                else:
                    merged[key] = secret
            row.credentials = merged
        elif name == "options":
            row.options = {**row.options, **(value or {})}
        else:
            setattr(row, name, value)
        edited.add(name)
    row.edited = sorted(edited)
    row.updated_at = now
    # Columns of fields nobody edited keep today's effective value, for reading at a glance.
    for name in ("enabled", "base_url", "currency", "rate_per_minute", "schedule"):
        if name not in edited:
            setattr(row, name, getattr(current, name))
