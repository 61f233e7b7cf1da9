"""Access tokens shared by every process, refreshed by one of them at a time.

The offers service hands out one access token at a time (asking while one is valid gets
400) and eBay's tokens live two hours: both are kept in the database with their expiry,
so a restarted process or a second worker uses the stored token instead of asking again.
A refresh is single-flight: an asyncio lock within a process, and across processes a
short lease on the token row (``refreshing_until``) that the others wait out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from dispatch.catalog.provider import ProviderUnavailable
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import CatalogProviderToken

REFRESH_LEASE = timedelta(seconds=30)
POLL_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: datetime | None

    def usable(self, now: datetime, margin: timedelta = timedelta(0)) -> bool:
        return bool(self.value) and (self.expires_at is None or self.expires_at > now + margin)


# Asks the provider for a new token: (token, expiry) or raises ProviderError.
Fetch = Callable[[], Awaitable[Token]]


class TokenStore:
    def __init__(self, database: Database, provider: str, margin_seconds: float) -> None:
        self.database = database
        self.provider = provider
        self.margin = timedelta(seconds=margin_seconds)
        self._lock = asyncio.Lock()

    async def stored(self) -> Token | None:
        async with self.database.session(write=False) as session:
            row = await session.get(CatalogProviderToken, self.provider)
            return Token(row.access_token, row.expires_at) if row and row.access_token else None

    async def get(self, fetch: Fetch, *, wait_seconds: float = 15.0) -> Token:
        """A token good for at least the margin (or the current one while a new one is refused)."""
        current = await self.stored()
        if current is not None and current.usable(utcnow(), self.margin):
            return current
        async with self._lock:
            current = await self.stored()
            if current is not None and current.usable(utcnow(), self.margin):
                return current
            if await self._claim():
                return await self._refresh(fetch, current)
            return await self._wait_for_other(current, wait_seconds)

    async def invalidate(self, token: str) -> None:
        """The provider refused ``token`` (401): stop using it."""
        async with self.database.session() as session:
            await session.execute(
                update(CatalogProviderToken)
                .where(
                    CatalogProviderToken.provider == self.provider,
                    CatalogProviderToken.access_token == token,
                )
                .values(expires_at=utcnow() - timedelta(seconds=1), updated_at=utcnow())
            )

    async def _claim(self) -> bool:
        now = utcnow()
        async with self.database.session() as session:
            claimed = await session.execute(
                update(CatalogProviderToken)
                .where(
                    CatalogProviderToken.provider == self.provider,
                    or_(
                        CatalogProviderToken.refreshing_until.is_(None),
                        CatalogProviderToken.refreshing_until < now,
                    ),
                )
                .values(refreshing_until=now + REFRESH_LEASE)
                .returning(CatalogProviderToken.provider)
            )
            if claimed.first() is not None:
                return True
            exists = await session.scalar(
                select(CatalogProviderToken.provider).where(
                    CatalogProviderToken.provider == self.provider
                )
            )
        if exists is not None:
            return False
        try:
            async with self.database.session() as session:
                session.add(
                    CatalogProviderToken(
                        provider=self.provider,
                        access_token="",
                        refreshing_until=now + REFRESH_LEASE,
                        updated_at=now,
                    )
                )
            return True
        except IntegrityError:  # another process created the row first and holds the lease
            return False

    async def _refresh(self, fetch: Fetch, current: Token | None) -> Token:
        try:
            token = await fetch()
        except ProviderUnavailable as exc:
            await self._release()
            # The provider refuses a new token while one is valid: use ours until it ends.
            if current is not None and current.usable(utcnow()):
                return current
            raise exc
        except BaseException:
            await self._release()
            raise
        async with self.database.session() as session:
            await session.execute(
                update(CatalogProviderToken)
                .where(CatalogProviderToken.provider == self.provider)
                .values(
                    access_token=token.value,
                    expires_at=token.expires_at,
                    refreshing_until=None,
                    updated_at=utcnow(),
                )
            )
        return token

    async def _release(self) -> None:
        async with self.database.session() as session:
            await session.execute(
                update(CatalogProviderToken)
                .where(CatalogProviderToken.provider == self.provider)
                .values(refreshing_until=None)
            )

    async def _wait_for_other(self, current: Token | None, wait_seconds: float) -> Token:
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            fresh = await self.stored()
            if fresh is not None and fresh.usable(utcnow(), self.margin):
                return fresh
        if current is not None and current.usable(utcnow()):
            return current
        raise ProviderUnavailable(
            self.provider, "another process is refreshing the access token", retry_after=5.0
        )
