"""Each test gets its own migrated database: a copy of a migrated SQLite file, or, when
DISPATCH_TEST_DATABASE_URL is set, a private PostgreSQL schema truncated between tests."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from dispatch.config import Settings, normalise_database_url
from dispatch.db import migrations
from dispatch.db.engine import Database
from dispatch.demo.mail import Mailbox, smtp_server
from tests.support import (
    make_settings,
    run_sql,
    running_app,
    test_database_url,
    test_redis_url,
)


async def _migrate(settings: Settings) -> None:
    database = Database(settings)
    try:
        await migrations.upgrade(database)
    finally:
        await database.dispose()


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Migrate once per test session."""
    url = test_database_url()
    if url is None:
        path = tmp_path_factory.mktemp("template") / "template.db"
        asyncio.run(_migrate(make_settings(database_url=f"sqlite:///{path}")))
        yield {"template": path}
        return
    schema = f"dispatch_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(run_sql(url, f"CREATE SCHEMA {schema}"))
    asyncio.run(_migrate(make_settings(database_url=url, database_schema=schema)))
    yield {"database_url": url, "database_schema": schema}
    asyncio.run(run_sql(url, f"DROP SCHEMA {schema} CASCADE"))


async def _truncate(url: str, schema: str) -> None:
    engine = create_async_engine(normalise_database_url(url))
    try:
        async with engine.begin() as connection:
            rows = await connection.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = :schema "
                    "AND tablename <> 'alembic_version'"
                ),
                {"schema": schema},
            )
            tables = ", ".join(f"{schema}.{name}" for (name,) in rows)
            if tables:
                await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture
async def db_settings(database_template: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Settings values pointing at a fresh, migrated database for this test."""
    template = database_template.get("template")
    if template is not None:
        target = tmp_path / "dispatch.db"
        shutil.copyfile(template, target)
        return {"database_url": f"sqlite:///{target}"}
    await _truncate(database_template["database_url"], database_template["database_schema"])
    return {
        "database_url": database_template["database_url"],
        "database_schema": database_template["database_schema"],
    }


@pytest.fixture
def settings(db_settings: dict[str, Any]) -> Settings:
    return make_settings(**db_settings)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as http:
        yield http


@pytest.fixture
def redis_url() -> str:
    url = test_redis_url()
    if url is None:
        pytest.skip("DISPATCH_TEST_REDIS_URL is not set")
    return url


@pytest.fixture
def postgres_url() -> str:
    url = test_database_url()
    if url is None:
        pytest.skip("DISPATCH_TEST_DATABASE_URL is not set")
    return url


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on loopback: (its mailbox, its port)."""
    with smtp_server() as server:
        yield server
