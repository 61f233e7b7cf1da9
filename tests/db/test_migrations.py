from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.engine import Connection

from dispatch.app import create_app
from dispatch.db import migrations
from dispatch.db.base import Base
from dispatch.db.engine import Database
from dispatch.db.migrations import PendingMigrations
from dispatch.models.unmanaged import managed_by_models
from tests.support import admin_headers, make_settings, run_cli, run_sql, running_app


async def test_embedded_sqlite_migrates_itself_on_start(tmp_path: Path) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path}/fresh.db")
    async with running_app(settings) as client:
        response = await client.get("/api/v1/keys", headers=admin_headers())
    assert response.status_code == 200
    database = Database(settings)
    try:
        assert await migrations.pending_revisions(database) == []
    finally:
        await database.dispose()


async def test_pending_revisions_are_listed(tmp_path: Path) -> None:
    database = Database(make_settings(database_url=f"sqlite:///{tmp_path}/empty.db"))
    try:
        on_disk = sorted(
            path.name.split("_", 1)[0]
            for path in (Path(__file__).parents[2] / "migrations" / "versions").glob("0*.py")
        )
        assert on_disk[:5] == ["0001", "0002", "0003", "0004", "0005"]
        assert await migrations.pending_revisions(database) == on_disk
        await migrations.upgrade(database)
        assert await migrations.pending_revisions(database) == []
    finally:
        await database.dispose()


async def test_postgres_refuses_to_start_with_pending_migrations(postgres_url: str) -> None:
    schema = f"dispatch_pending_{uuid.uuid4().hex[:8]}"
    await run_sql(postgres_url, f"CREATE SCHEMA {schema}")
    try:
        settings = make_settings(database_url=postgres_url, database_schema=schema)
        with pytest.raises(PendingMigrations, match="dispatch migrate"):
            async with LifespanManager(create_app(settings)):
                pass
        database = Database(settings)
        try:
            await migrations.upgrade(database)
        finally:
            await database.dispose()
        async with running_app(settings) as client:
            assert (await client.get("/ready")).status_code == 200
    finally:
        await run_sql(postgres_url, f"DROP SCHEMA {schema} CASCADE")


async def test_models_match_migrations(db_settings: dict[str, Any]) -> None:
    """The same check as CI's `alembic check`, on this test's database."""

    def diff(connection: Connection) -> list[Any]:
        opts = {"compare_type": True, "include_object": managed_by_models}
        context = MigrationContext.configure(connection, opts=opts)
        return list(compare_metadata(context, Base.metadata))

    database = Database(make_settings(**db_settings))
    try:
        async with database.engine.connect() as connection:
            assert await connection.run_sync(diff) == []
    finally:
        await database.dispose()


async def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path}/newer.db")
    database = Database(settings)
    try:
        await migrations.upgrade(database)
        async with database.session() as session:
            await session.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(migrations.UnknownRevision, match="9999"):
            await migrations.prepare(database, settings)
    finally:
        await database.dispose()


def test_serve_refuses_pending_migrations_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    schema = f"dispatch_pending_{uuid.uuid4().hex[:8]}"
    asyncio.run(run_sql(postgres_url, f"CREATE SCHEMA {schema}"))
    try:
        env = {
            "DATABASE_URL": postgres_url,
            "DATABASE_SCHEMA": schema,
            "MASTER_KEY": "dsp_cli-test-key-0123456789",
        }
        result = run_cli(["serve", "--workers", "2", "--port", "1"], tmp_path, env)
    finally:
        asyncio.run(run_sql(postgres_url, f"DROP SCHEMA {schema} CASCADE"))
    assert result.returncode == 1
    assert "run `dispatch migrate` first" in result.stderr


def test_head_revision_names_the_newest_script() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations.alembic_config())
    assert script.get_heads() == [migrations.HEAD_REVISION], (
        "a migration was added: set migrations.HEAD_REVISION to its revision"
    )


async def test_at_head_reads_the_version_row(tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations.alembic_config())
    previous = script.get_revision(migrations.HEAD_REVISION).down_revision
    database = Database(make_settings(database_url=f"sqlite:///{tmp_path}/head.db"))
    try:
        assert await migrations.at_head(database) is False  # no alembic_version table yet
        await migrations.upgrade(database)
        assert await migrations.at_head(database) is True
        async with database.session() as session:
            await session.execute(
                text("UPDATE alembic_version SET version_num = :previous"), {"previous": previous}
            )
        assert await migrations.at_head(database) is False
        assert await migrations.pending_revisions(database) == [migrations.HEAD_REVISION]
    finally:
        await database.dispose()


def test_the_server_process_loads_no_alembic_httpx_or_redis() -> None:
    """Idle memory: these load only when needed (a migration, telemetry, REDIS_URL)."""
    probe = (
        "import sys, dispatch.app, dispatch.cli.main; "
        "print(','.join(m for m in ('alembic', 'httpx', 'redis', 'aiohttp') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


async def test_0013_gives_existing_attempts_their_jobs_spread_key(tmp_path: Path) -> None:
    database = Database(make_settings(database_url=f"sqlite:///{tmp_path}/old.db"))
    try:
        await migrations.upgrade(database, "0012")
        now = "2026-12-01 00:00:00.000000"
        async with database.write_engine.begin() as connection:
            for job_id, key in ((1, "asset:7"), (2, None)):
                await connection.execute(
                    text(
                        "INSERT INTO jobs (id, kind, queue, args, state, priority, attempt,"
                        " max_attempts, run_at, created_at, cancel_requested, required_capacity,"
                        " required_labels, spread_key) VALUES (:id, 'rescue.copy', 'rescue',"
                        " '{}', 'running', 0, 1, 5, :now, :now, 0, 0, '[]', :key)"
                    ),
                    {"id": job_id, "now": now, "key": key},
                )
                await connection.execute(
                    text(
                        "INSERT INTO job_attempts (job_id, attempt, worker, lease_token, outcome,"
                        " started_at) VALUES (:id, 1, 'node:n1', 'token', 'running', :now)"
                    ),
                    {"id": job_id, "now": now},
                )
        await migrations.upgrade(database)
        async with database.write_engine.begin() as connection:
            rows = (
                await connection.execute(
                    text("SELECT job_id, spread_key FROM job_attempts ORDER BY job_id")
                )
            ).all()
        assert [tuple(row) for row in rows] == [(1, "asset:7"), (2, None)]
    finally:
        await database.dispose()
