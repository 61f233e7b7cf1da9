from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from dispatch.db.engine import Database
from tests.support import make_settings


@pytest.fixture
async def database(db_settings: dict[str, Any]) -> AsyncIterator[Database]:
    """A Database on this test's own migrated database."""
    db = Database(make_settings(**db_settings))
    yield db
    await db.dispose()
