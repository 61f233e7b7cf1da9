"""Key last-used times, gathered in memory and written in one batch every few seconds.

Writing ``last_used_at`` inside each request would turn every GET into a write
transaction (and, on SQLite, a second writer queued behind the request's own).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, update

from dispatch.db.engine import Database
from dispatch.models import ApiKey


class KeyUsage:
    def __init__(self) -> None:
        self._pending: dict[int, datetime] = {}

    def record(self, key_id: int, when: datetime) -> None:
        self._pending[key_id] = when

    async def flush(self, database: Database) -> int:
        """Write the pending times; a later time already stored is never moved back."""
        pending, self._pending = self._pending, {}
        if not pending:
            return 0
        async with database.session() as session:
            for key_id, when in pending.items():
                await session.execute(
                    update(ApiKey)
                    .where(ApiKey.id == key_id)
                    .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < when))
                    .values(last_used_at=when)
                )
        return len(pending)
