"""What the soak samples of the server under test: its process tree, its database handles.

Resources are read with psutil from the ``dispatch serve`` process and every child it has:
resident memory, open file descriptors, threads. Database connections are counted from the
server's side too: on SQLite, the descriptors open on the database file itself (each
connection holds one, and one on the ``-wal``; the ``-shm`` is one per process); on
PostgreSQL, the server's TCP connections to the database port, checked against
``pg_stat_activity`` rows with the same client ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import psycopg


@dataclass(frozen=True)
class Resources:
    rss_mb: float  # MB = 10^6 bytes
    anon_mb: float  # of which anonymous (heap, SQLite's page caches), not file-backed
    fds: int
    threads: int
    processes: int
    db_connections: int
    db_backends: int | None  # PostgreSQL: pg_stat_activity rows of those connections
    db_fds: int | None  # SQLite: descriptors on the database file, its -wal and -shm


class ResourceProbe:
    """Reads one server's process tree and its database connections."""

    def __init__(self, pid: int, database_url: str, sqlite_file: Path | None) -> None:
        self.pid = pid
        self.sqlite_file = sqlite_file
        self.database_url = database_url
        self.postgres_port = urlsplit(database_url).port or 5432

    def read(self) -> Resources:
        parent = psutil.Process(self.pid)
        processes = [parent, *parent.children(recursive=True)]
        rss = shared = fds = threads = 0
        connections: list[int] = []  # local ports, PostgreSQL only
        db_files: list[str] = []
        for process in processes:
            try:
                with process.oneshot():
                    memory = process.memory_info()
                    rss += memory.rss
                    shared += memory.shared
                    fds += process.num_fds()
                    threads += process.num_threads()
                    if self.sqlite_file is not None:
                        db_files += [f.path for f in process.open_files() if self._ours(f.path)]
                    else:
                        connections += self._postgres_ports(process)
            except psutil.NoSuchProcess:
                continue  # a short-lived child (the SQLite migration step) went away
        mb = (rss / 1_000_000, (rss - shared) / 1_000_000)
        if self.sqlite_file is not None:
            main = db_files.count(str(self.sqlite_file))
            return Resources(*mb, fds, threads, len(processes), main, None, len(db_files))
        backends = self._backends(connections)
        return Resources(*mb, fds, threads, len(processes), len(connections), backends, None)

    def _ours(self, path: str) -> bool:
        """The database file, or its ``-wal`` or ``-shm``."""
        return path.startswith(str(self.sqlite_file))

    def _postgres_ports(self, process: psutil.Process) -> list[int]:
        return [
            c.laddr.port
            for c in process.net_connections(kind="tcp")
            if c.raddr and c.raddr.port == self.postgres_port and c.status == "ESTABLISHED"
        ]

    def _backends(self, ports: list[int]) -> int:
        """How many of those connections PostgreSQL itself lists as backends."""
        if not ports:
            return 0
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY(%s)", (ports,)
            ).fetchone()
        return int(row[0]) if row else 0


def sqlite_size_mb(sqlite_file: Path) -> float:
    """The database file and its write-ahead log, in MB."""
    paths = [sqlite_file, sqlite_file.with_name(sqlite_file.name + "-wal")]
    return sum(p.stat().st_size for p in paths if p.exists()) / 1_000_000


def postgres_size_mb(database_url: str, schema: str) -> float:
    """Every table and index of ``schema``, in MB."""
    query = (
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'"
    )
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(query, (schema,)).fetchone()
    return float(row[0]) / 1_000_000 if row else 0.0
