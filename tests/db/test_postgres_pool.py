"""PostgreSQL pool: idle connections are pinged before use, busy ones are not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from dispatch.db import engine as engine_module
from dispatch.db.engine import Database
from tests.support import TcpProxy, make_settings


async def _select_one(database: Database) -> Any:
    async with database.session(write=False) as session:
        return await session.scalar(text("SELECT 1"))


@pytest.fixture
async def proxied(db_settings: dict[str, Any], postgres_url: str) -> Any:
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    database = Database(make_settings(**(db_settings | {"database_url": through})))
    yield proxy, database
    await database.dispose()
    await proxy.stop()


async def test_an_idle_connection_cut_by_a_restart_is_replaced_before_use(
    proxied: tuple[TcpProxy, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, database = proxied
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.2)
    assert await _select_one(database) == 1
    await proxy.stop()  # the pooled connection dies with the "restart"
    await proxy.start()
    await asyncio.sleep(0.3)  # idle longer than the ping threshold
    assert await _select_one(database) == 1  # pinged, found dead, reconnected: no error


async def test_a_busy_connection_skips_the_ping_and_the_pool_recovers_after_one_error(
    proxied: tuple[TcpProxy, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, database = proxied
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 60.0)
    assert await _select_one(database) == 1
    await proxy.stop()
    await proxy.start()
    with pytest.raises(DBAPIError):  # used again at once: not pinged, so the error shows once
        await _select_one(database)
    assert await _select_one(database) == 1  # the pool dropped the dead connection
