"""Connections to the store: SQLite (one writer connection + reader pool) or PostgreSQL.

Every SQLite/PostgreSQL difference in connection handling lives here. Callers use
:meth:`Store.read` for queries and :meth:`Store.write` for a write transaction; on SQLite all
writes of this process go through one connection guarded by a lock (``BEGIN IMMEDIATE`` so
several processes on one file queue up on SQLite's lock instead of failing).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import QueuePool

Dialect = Literal["sqlite", "postgresql"]


class StoreConfigError(ValueError):
    """The database URL cannot be used (unknown scheme, malformed)."""


def normalize_url(url: str) -> str:
    """Turn a user-facing database URL into the SQLAlchemy URL we connect with.

    ``postgresql://…`` and ``postgres://…`` (libpq style) become ``postgresql+psycopg://…``;
    ``sqlite:///path`` stays. A bare filesystem path is taken as a SQLite file.
    """
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser()}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme == "sqlite":
        return url
    raise StoreConfigError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///path/to/file.db or postgresql://user@host:port/db"
    )


def _sqlite_pragmas(synchronous: str, *, writer: bool) -> list[str]:
    # Page cache per connection: the writer gets 32 MiB, each reader 8 MiB. With the memory map
    # capped at 64 MiB the server stays well under 300 MB of RSS on a multi-GB database.
    return [
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={synchronous}",
        "PRAGMA busy_timeout=30000",
        "PRAGMA foreign_keys=OFF",
        f"PRAGMA cache_size={-32768 if writer else -8192}",
        "PRAGMA temp_store=MEMORY",
        "PRAGMA mmap_size=67108864",
        "PRAGMA analysis_limit=1000",
    ]


class Store:
    """A handle on one Threadline database."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 6) -> None:
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise StoreConfigError(f"malformed database URL: {exc}") from exc
        self.dialect: Dialect = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql"
        self._write_lock = threading.Lock()
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._reader = self._sqlite_engine(sqlite_synchronous, writer=False, pool_size=pool_size)
            self._writer = self._sqlite_engine(sqlite_synchronous, writer=True, pool_size=1)
        else:
            engine = create_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                connect_args={"connect_timeout": 10},
            )
            self._reader = engine
            self._writer = engine

    def _sqlite_engine(self, synchronous: str, *, writer: bool, pool_size: int) -> Engine:
        engine = create_engine(
            self.url, poolclass=QueuePool, pool_size=pool_size, max_overflow=0,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_conn.cursor()
            for pragma in _sqlite_pragmas(synchronous, writer=writer):
                cursor.execute(pragma)
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin)

        return engine

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for queries; on SQLite a consistent snapshot for its lifetime."""
        with self._reader.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``tx``), committed when the block exits without an error."""
        if self.dialect == "sqlite":
            with self._write_lock, self._writer.begin() as tx:
                yield tx
        else:
            with self._writer.begin() as tx:
                yield tx

    def optimize(self) -> None:
        """Refresh the query planner's statistics where they are stale (cheap when they are not).

        SQLite: ``PRAGMA optimize`` with a bounded ``analysis_limit``; PostgreSQL's autovacuum
        does this by itself.
        """
        if self.dialect == "sqlite":
            with self.write() as tx:
                tx.exec_driver_sql("PRAGMA optimize")

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.read() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        """Close every pooled connection."""
        self._reader.dispose()
        if self._writer is not self._reader:
            self._writer.dispose()


def open_store(url: str, *, sqlite_synchronous: str = "FULL", migrate: bool = True) -> Store:
    """Open a store and bring its schema to the newest migration."""
    store = Store(url, sqlite_synchronous=sqlite_synchronous)
    if migrate:
        from threadline.server.store.migrate import upgrade

        upgrade(store)
    return store
