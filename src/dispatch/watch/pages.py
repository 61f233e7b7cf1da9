"""Seed 003's pagination: ``limit`` (1..200) and ``offset``, or an opaque ``cursor``.

Lists are ordered newest first (``created_at DESC, id DESC``); a cursor is
base64url("created_at|id") of the last item of a page, and the next page starts after it.
The next page's cursor is sent in the ``X-Next-Cursor`` header (the body stays the
seed's plain list).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Response
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from dispatch.errors import ValidationFailed

T = TypeVar("T")
NEXT_CURSOR_HEADER = "X-Next-Cursor"


def encode_cursor(created_at: datetime, row_id: int) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[datetime, int]:
    try:
        padded = value + "=" * (-len(value) % 4)
        stamp, _, row_id = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment, int(row_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValidationFailed("Invalid cursor", details={"cursor": value[:200]}) from exc


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    offset: int
    cursor: tuple[datetime, int] | None

    def apply(
        self,
        query: Select[T],
        created_at: InstrumentedAttribute[datetime],
        row_id: InstrumentedAttribute[int],
    ) -> Select[T]:
        """Newest first, after the cursor or from the offset, one row more than the page."""
        if self.cursor is not None:
            moment, last = self.cursor
            query = query.where(or_(created_at < moment, and_(created_at == moment, row_id < last)))
        query = query.order_by(created_at.desc(), row_id.desc()).limit(self.limit + 1)
        return query.offset(self.offset) if self.offset else query

    def trim(self, rows: list[Any], response: Response) -> list[Any]:
        """The page's rows; the next page's cursor goes in a header when there is one."""
        if len(rows) > self.limit:
            rows = rows[: self.limit]
            last = rows[-1]
            response.headers[NEXT_CURSOR_HEADER] = encode_cursor(last.created_at, last.id)
        return rows


async def page_params(
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int | None, Query(ge=0)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Page:
    if offset is not None and cursor is not None:
        raise ValidationFailed("Use either offset or cursor, not both")
    return Page(limit, offset or 0, decode_cursor(cursor) if cursor else None)


PageDep = Annotated[Page, Depends(page_params)]
