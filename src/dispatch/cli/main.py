"""``dispatch serve | migrate | keys``."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import uvicorn

from dispatch import __version__
from dispatch.catalog.context import CatalogContext
from dispatch.config import ConfigError, Settings, load_settings
from dispatch.db import migrations
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.errors import NotFound
from dispatch.gateway.context import GatewayContext
from dispatch.jobs import build_registry, worker_config
from dispatch.queue.worker import Worker
from dispatch.security import api_keys
from dispatch.security.bootstrap import ensure_master_key
from dispatch.security.scopes import Scope
from dispatch.telemetry.logging import configure_logging, resolve_format

app = typer.Typer(
    help="Dispatch: catalogue, watch, gateway and fleet on one task queue.", no_args_is_help=True
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
node_app = typer.Typer(help="A data-rescue node (seed 004's volunteers).", no_args_is_help=True)
app.add_typer(node_app, name="node")

T = TypeVar("T")
EnvFile = Annotated[Path, typer.Option("--env-file", help="The .env file to read and bootstrap")]


def _settings(env_file: Path) -> Settings:
    try:
        settings = load_settings(env_file)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, resolve_format(settings.log_format, settings.environment))
    return settings


def _with_database(
    settings: Settings, action: Callable[[Database], Awaitable[T]], *, prepare: bool = True
) -> T:
    """Run ``action`` on a database brought up to date as ``serve`` would."""

    async def run() -> T:
        database = Database(settings)
        try:
            if prepare:
                await migrations.prepare(database, settings)
            return await action(database)
        finally:
            await database.dispose()

    try:
        return asyncio.run(run())
    except (migrations.PendingMigrations, migrations.UnknownRevision) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def migrate(env_file: EnvFile = Path(".env")) -> None:
    """Apply every pending migration."""
    settings = _settings(env_file)
    _with_database(settings, migrations.upgrade, prepare=False)
    typer.echo(f"database at head ({settings.database_kind})")


@app.command(hidden=True)
def prepare(env_file: EnvFile = Path(".env")) -> None:
    """Migrate the embedded default, else check that no migration is pending (used by serve)."""
    settings = _settings(env_file)
    _with_database(settings, lambda database: migrations.prepare(database, settings), prepare=False)


@app.command()
def serve(
    env_file: EnvFile = Path(".env"),
    host: Annotated[str | None, typer.Option(help="Overrides HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides PORT")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Web server processes")] = 1,
) -> None:
    """Serve the API and admin UI (migrating first on the embedded SQLite default)."""
    settings = _settings(env_file)
    if settings.master_key is None and not settings.api_keys:
        generated = ensure_master_key(env_file)
        if generated is not None:
            _announce_master_key(generated, env_file)
            settings = _settings(env_file)
    # Check (or, embedded, apply) migrations once here, before any worker process starts. When
    # the database is behind, that runs in a child process, so Alembic's modules never take up
    # the server's memory.
    if not _with_database(settings, migrations.at_head, prepare=False):
        code = subprocess.call(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "dispatch", "prepare", "--env-file", str(env_file)]
        )
        if code != 0:
            raise typer.Exit(code)
    uvicorn.run(
        "dispatch.app:create_app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is read only from TRUSTED_PROXIES
        server_header=False,
        env_file=str(env_file) if env_file.exists() else None,
    )


@app.command()
def worker(
    env_file: EnvFile = Path(".env"),
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Overrides WORKER_CONCURRENCY")
    ] = None,
    queue: Annotated[list[str] | None, typer.Option(help="Overrides WORKER_QUEUES; repeat")] = None,
) -> None:
    """Run a standalone queue worker until SIGTERM or SIGINT (any number, on any machine)."""
    settings = _settings(env_file)
    overrides: dict[str, object] = {}
    if concurrency is not None:
        overrides["concurrency"] = concurrency
    if queue:
        overrides["queues"] = tuple(queue)

    async def run(database: Database) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        config = worker_config(settings, **overrides)
        gateway = GatewayContext.build(settings, database)
        catalog = CatalogContext(settings, database)
        try:
            await Worker(database, build_registry(gateway, catalog), config).run(stop)
        finally:
            await catalog.close()
            await gateway.close()

    _with_database(settings, run)


def _announce_master_key(key: str, env_file: Path) -> None:
    banner = "=" * 72
    typer.echo(
        f"{banner}\nGenerated a master key (all scopes). It is shown only this once and\n"
        f"saved as MASTER_KEY in {env_file} (mode 0600):\n\n    {key}\n\n"
        f"Use it as the X-Dispatch-Key header or to log in to the admin UI.\n{banner}"
    )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for")],
    scope: Annotated[list[Scope], typer.Option(help="Repeat for several scopes")] = [Scope.READ],  # noqa: B006
    expires_in_days: Annotated[int | None, typer.Option(min=1)] = None,
    env_file: EnvFile = Path(".env"),
) -> None:
    """Create a key and print it once."""
    settings = _settings(env_file)
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None

    async def create(database: Database) -> str:
        async with database.session() as session:
            record, plaintext = await api_keys.create_key(session, name, scope, expires_at)
        typer.echo(
            f"id={record.id} prefix={record.prefix} scopes={','.join(record.scopes)}", err=True
        )
        return plaintext

    typer.echo(_with_database(settings, create))


@keys_app.command("list")
def keys_list(
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys")] = False,
    env_file: EnvFile = Path(".env"),
) -> None:
    """List keys (prefixes only)."""
    settings = _settings(env_file)

    async def rows(database: Database) -> list[str]:
        async with database.session(write=False) as session:
            records = await api_keys.list_keys(session, include_revoked)
        return [
            f"{r.id}\t{r.prefix}\t{r.name}\t{','.join(r.scopes)}\t"
            f"{'revoked' if r.revoked_at else 'active'}\t"
            f"expires={r.expires_at.isoformat() if r.expires_at else 'never'}"
            for r in records
        ]

    for line in _with_database(settings, rows):
        typer.echo(line)


@keys_app.command("revoke")
def keys_revoke(key_id: int, env_file: EnvFile = Path(".env")) -> None:
    """Revoke a key by id."""
    settings = _settings(env_file)

    async def revoke(database: Database) -> None:
        async with database.session() as session:
            await api_keys.revoke_key(session, key_id)

    try:
        _with_database(settings, revoke)
    except NotFound as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked key {key_id}")


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo keeps its database and rescued files")
    ] = Path("dispatch-demo"),
    port: Annotated[int, typer.Option(min=1, max=65535, help="The service's port")] = 8000,
    console_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="The demo console's port (default: any)")
    ] = None,
) -> None:
    """Try Dispatch offline: the service on SQLite with stand-ins for providers, webhooks and
    e-mail on 127.0.0.1, a gateway endpoint, a watch user and rule, and two rescue nodes."""
    from dispatch.demo.run import DemoError, guide, run_demo

    configure_logging("WARNING", resolve_format("console", "development"))
    try:
        run_demo(
            directory, port, console_port, ready=lambda made: typer.echo(guide(made), nl=False)
        )
    except DemoError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("Dispatch demo stopped.")


@node_app.command("run")
def node_run(
    server: Annotated[
        str, typer.Option(help="The Dispatch service, e.g. https://dispatch.example")
    ],
    token: Annotated[
        str,
        typer.Option(help="The node's token (dnode_…), or an API key that may register nodes"),
    ],
    directory: Annotated[Path, typer.Option("--dir", help="Where rescued files are kept")],
    name: Annotated[str, typer.Option(help="The node's name")] = "rescue-node",
    description: Annotated[str, typer.Option(help="Seed 004's node description")] = "",
    parallel: Annotated[int, typer.Option(min=1, max=64, help="Downloads at once")] = 2,
    reserve_mb: Annotated[int, typer.Option(min=0, help="Disk to keep free (MB)")] = 0,
    min_backoff: Annotated[float, typer.Option(min=0.01, help="First wait when idle (s)")] = 30.0,
    max_backoff: Annotated[float, typer.Option(min=0.01, help="Longest wait (s)")] = 3600.0,
    once: Annotated[bool, typer.Option(help="Stop when the service has nothing left")] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
) -> None:
    """Rescue data: ask for copies that fit the free disk, download, verify, seed, report."""
    from dispatch.fleet import agent

    configure_logging(log_level.upper(), resolve_format("auto", "production"))
    agent.run(
        agent.Config(
            server=server,
            token=token,
            directory=directory,
            name=name,
            description=description,
            parallel=parallel,
            reserve_mb=reserve_mb,
            min_backoff=min_backoff,
            max_backoff=max(min_backoff, max_backoff),
            once=once,
        )
    )
