"""Catalogue search: one API over SQLite FTS5 and PostgreSQL full text.

Terms are words of letters and digits (``"DD1391-100"`` is ``dd1391`` and ``100``; codes are
also indexed without punctuation, so ``dd1391100`` finds it too); every term must match,
the last one as a prefix when it has three characters or more. Title, SKU-like codes,
brand and tags/categories are weighted in that order for the relevance sort. Sorting by
price or newest pages by keyset (cursor = the last row's sort key and id); relevance pages
by offset, up to ``MAX_RELEVANCE_OFFSET``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    column,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.errors import BadRequest
from dispatch.models import CatalogProduct

Sort = Literal["relevance", "price", "-price", "newest"]
FTS_TABLE = "catalog_products_fts"
MAX_TERMS = 12
MAX_RANKED_CANDIDATES = 5_000
MAX_RELEVANCE_OFFSET = MAX_RANKED_CANDIDATES - 100
_WORD = re.compile(r"\w+", re.UNICODE)
# bm25 column weights, in the FTS table's column order: title, brand, codes, keywords.
_BM25 = f"bm25({FTS_TABLE}, 10.0, 4.0, 10.0, 2.0)"


@dataclass(frozen=True)
class Filters:
    text: str | None = None
    providers: tuple[str, ...] = ()
    brand: str | None = None
    min_price_minor: int | None = None
    max_price_minor: int | None = None
    currency: str | None = None
    in_stock: bool | None = None
    status: str | None = "active"  # None: every status


@dataclass(frozen=True)
class Page:
    items: list[CatalogProduct]
    next_cursor: str | None


def terms(text: str | None) -> list[str]:
    """The words of a query, lower-cased, at most ``MAX_TERMS``."""
    return [word.lower()[:64] for word in _WORD.findall(text or "")][:MAX_TERMS]


def fts5_query(words: Sequence[str]) -> str:
    """An FTS5 MATCH expression: every word, the last as a prefix (3+ characters)."""
    quoted = [f'"{word}"' for word in words]
    if words and len(words[-1]) >= 3:
        quoted[-1] += "*"
    return " ".join(quoted)


def tsquery(words: Sequence[str]) -> str:
    """The same for ``to_tsquery('simple', …)``; words are letters and digits only."""
    parts = [f"'{word}'" for word in words]
    if words and len(words[-1]) >= 3:
        parts[-1] += ":*"
    return " & ".join(parts)


def encode_cursor(values: dict[str, Any]) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error) as exc:
        raise BadRequest("The cursor is not one this API gave out") from exc
    if not isinstance(value, dict):
        raise BadRequest("The cursor is not one this API gave out")
    return value


def _cursor_int(state: dict[str, Any], key: str) -> int:
    value = state.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("The cursor is not one this API gave out")
    return value


def _filtered(query: Select[Any], filters: Filters) -> Select[Any]:
    p = CatalogProduct
    if filters.providers:
        query = query.where(p.provider.in_(filters.providers))
    if filters.brand:
        query = query.where(p.brand_key == filters.brand.strip().lower())
    if filters.currency:
        query = query.where(p.currency == filters.currency)
    if filters.min_price_minor is not None:
        query = query.where(p.price_minor >= filters.min_price_minor)
    if filters.max_price_minor is not None:
        query = query.where(p.price_minor <= filters.max_price_minor)
    if filters.in_stock is not None:
        query = query.where(p.in_stock.is_(filters.in_stock))
    if filters.status:
        query = query.where(p.status == filters.status)
    return query


_VECTOR: ColumnElement[Any] = literal_column("catalog_products.search_vector")


def _ts_query(words: Sequence[str]) -> ColumnElement[Any]:
    return func.to_tsquery(literal_column("'simple'::regconfig"), tsquery(words))


def _text_match(dialect: str, words: Sequence[str]) -> ColumnElement[bool]:
    """The condition that finds products matching every word."""
    if dialect == "sqlite":
        rowid: ColumnElement[int] = literal_column("rowid")
        matched = (
            select(rowid)
            .select_from(text(FTS_TABLE))
            .where(text(f"{FTS_TABLE} MATCH :fts_query").bindparams(fts_query=fts5_query(words)))
        )
        return CatalogProduct.id.in_(matched)
    return _VECTOR.op("@@")(_ts_query(words))


def _keyset(sort: Sort, cursor: dict[str, Any]) -> ColumnElement[bool]:
    p = CatalogProduct
    last_id = _cursor_int(cursor, "id")
    if sort == "newest":
        return p.id < last_id
    price = _cursor_int(cursor, "price")
    if sort == "price":
        return or_(p.price_minor > price, and_(p.price_minor == price, p.id > last_id))
    return or_(p.price_minor < price, and_(p.price_minor == price, p.id < last_id))


_FTS = table(FTS_TABLE, column("rowid"))


def _from_fts(query: Select[Any], words: Sequence[str]) -> Select[Any]:
    """``query`` driven by the FTS5 table's matches (SQLite), products joined by rowid.

    Ordered by ``rowid`` descending, FTS5 walks its doclists newest first and the query
    stops at its LIMIT, instead of gathering every match of a common word first.
    """
    return query.select_from(_FTS.join(CatalogProduct, CatalogProduct.id == _FTS.c.rowid)).where(
        text(f"{FTS_TABLE} MATCH :fts_query").bindparams(fts_query=fts5_query(words))
    )


def _ranked(
    dialect: str, words: Sequence[str], filters: Filters, offset: int, limit: int
) -> Select[Any]:
    """Relevance among the newest ``MAX_RANKED_CANDIDATES`` matches that pass the filters.

    Scoring every match of a common word (a brand in a third of a million products) took
    hundreds of milliseconds; the newest matches are found by walking the index backwards
    and scored alone, and only the page's rows are then read in full. A query with fewer
    matches than the cap is ranked exactly.
    """
    if dialect == "sqlite":
        score: ColumnElement[Any] = literal_column(_BM25).label("score")
        inner = _filtered(_from_fts(select(CatalogProduct.id.label("pid"), score), words), filters)
        candidates = inner.order_by(_FTS.c.rowid.desc()).limit(MAX_RANKED_CANDIDATES).subquery()
        scored = select(candidates.c.pid, candidates.c.score)
        best = candidates.c.score.asc()  # bm25: lower is better
    else:
        inner = _filtered(
            select(CatalogProduct.id.label("pid"), _VECTOR.label("vector")).where(
                _text_match(dialect, words)
            ),
            filters,
        )
        candidates = (
            inner.order_by(CatalogProduct.id.desc()).limit(MAX_RANKED_CANDIDATES).subquery()
        )
        rank = func.ts_rank_cd(candidates.c.vector, _ts_query(words))
        scored = select(candidates.c.pid, (-rank).label("score"))
        best = (-rank).asc()
    page = scored.order_by(best, candidates.c.pid.desc()).offset(offset).limit(limit).subquery()
    return (
        select(CatalogProduct)
        .join(page, page.c.pid == CatalogProduct.id)
        .order_by(page.c.score, CatalogProduct.id.desc())
    )


async def search(
    session: AsyncSession,
    filters: Filters,
    *,
    sort: Sort | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> Page:
    """One page of products matching ``filters``, and the cursor of the next page."""
    dialect = session.get_bind().dialect.name
    words = terms(filters.text)
    sort = sort or ("relevance" if words else "newest")
    if sort == "relevance" and not words:
        sort = "newest"
    state = decode_cursor(cursor) if cursor else {}
    if sort == "relevance":
        offset = _cursor_int(state, "offset")
        if not 0 <= offset <= MAX_RELEVANCE_OFFSET:
            raise BadRequest(f"Relevance pages stop at {MAX_RELEVANCE_OFFSET} results")
        ranked = _ranked(dialect, words, filters, offset, limit + 1)
        items = list((await session.scalars(ranked)).all())
        more = len(items) > limit
        following = encode_cursor({"offset": offset + limit}) if more else None
        return Page(items[:limit], following)
    query = _filtered(select(CatalogProduct), filters)
    newest_by_fts = bool(words) and sort == "newest" and dialect == "sqlite"
    if newest_by_fts:
        query = _from_fts(query, words)
    elif words:
        query = query.where(_text_match(dialect, words))
    if sort == "newest":
        query = query.order_by((_FTS.c.rowid if newest_by_fts else CatalogProduct.id).desc())
    else:
        query = query.where(CatalogProduct.price_minor.is_not(None))
        price = CatalogProduct.price_minor
        order = (
            (price, CatalogProduct.id)
            if sort == "price"
            else (price.desc(), CatalogProduct.id.desc())
        )
        query = query.order_by(*order)
    if state:
        query = query.where(
            _FTS.c.rowid < _cursor_int(state, "id") if newest_by_fts else _keyset(sort, state)
        )
    items = list((await session.scalars(query.limit(limit + 1))).all())
    page = items[:limit]
    following = None
    if len(items) > limit:
        last = page[-1]
        following = encode_cursor({"id": last.id, "price": last.price_minor})
    return Page(page, following)
