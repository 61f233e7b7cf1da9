"""Alembic, driven from code: upgrade to head and report pending revisions.

Alembic itself (about 10 MB of modules) is imported only when the database is not at
``HEAD_REVISION``: a server starting on an up-to-date database checks one row and never loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from dispatch.config import Settings
from dispatch.db.engine import Database

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

log = structlog.get_logger(__name__)

# The newest migration script's revision. tests/db/test_migrations.py fails when a new script
# is added without moving this on.
HEAD_REVISION = "0013"


class PendingMigrations(RuntimeError):
    """The database is behind the code and this deployment does not migrate by itself."""


class UnknownRevision(RuntimeError):
    """The database carries a revision this code does not know: newer code migrated it."""


def migrations_path() -> Path:
    """The migration scripts: inside the installed wheel, else the source tree's ``migrations/``."""
    packaged = Path(__file__).resolve().parent.parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "migrations"


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    return config


def _upgrade(connection: Connection, config: Config, target: str) -> None:
    from alembic import command

    config.attributes["connection"] = connection
    command.upgrade(config, target)


def _current_heads(connection: Connection) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_heads()


async def upgrade(database: Database, target: str = "head") -> None:
    """Apply migrations up to ``target`` in one transaction."""
    pending = await pending_revisions(database)
    if not pending:
        return
    log.info("db.migrating", revisions=pending, database=database.kind)
    async with database.write_engine.begin() as connection:
        await connection.run_sync(_upgrade, alembic_config(), target)
    log.info("db.migrated", revisions=pending)


async def _known_heads(database: Database, script: ScriptDirectory) -> set[str]:
    """The database's current revisions, refusing any this code has never heard of."""
    async with database.engine.connect() as connection:
        current = set(await connection.run_sync(_current_heads))
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = sorted(current - known)
    if unknown:
        raise UnknownRevision(
            f"the database is at revision {', '.join(unknown)}, which this version of Dispatch "
            "does not know: it was migrated by a newer release; run that release instead"
        )
    return current


async def pending_revisions(database: Database) -> list[str]:
    """Head revisions the database has not reached yet (empty when up to date)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    current = await _known_heads(database, script)
    if set(script.get_heads()) == current:
        return []
    applied: set[str] = set()
    for head in current:
        applied.update(rev.revision for rev in script.iterate_revisions(head, "base"))
    # walk_revisions goes from head to base; report them in the order they will run.
    pending = [rev.revision for rev in script.walk_revisions() if rev.revision not in applied]
    return pending[::-1]


async def at_head(database: Database) -> bool:
    """Whether the database is exactly at ``HEAD_REVISION``, read without loading Alembic."""
    try:
        async with database.engine.connect() as connection:
            result = await connection.execute(text("SELECT version_num FROM alembic_version"))
            current = set(result.scalars().all())
    except DBAPIError:  # no alembic_version table yet: a fresh database
        return False
    return current == {HEAD_REVISION}


async def prepare(database: Database, settings: Settings) -> None:
    """Migrate the embedded SQLite default; elsewhere refuse to run behind the code."""
    if await at_head(database):
        return
    if settings.is_embedded:
        await upgrade(database)
        return
    pending = await pending_revisions(database)
    if pending:
        raise PendingMigrations(
            f"the database is missing migrations {', '.join(pending)}; run `dispatch migrate` first"
        )
