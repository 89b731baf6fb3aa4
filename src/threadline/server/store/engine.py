"""Connections to the store: SQLite (one writer connection + reader pool) or PostgreSQL.

Every SQLite/PostgreSQL difference in connection handling lives here. Callers use
:meth:`Store.read` for queries and :meth:`Store.write` for a write transaction; on SQLite all
writes of this process go through one connection guarded by a lock (``BEGIN IMMEDIATE`` so
several processes on one file queue up on SQLite's lock instead of failing).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import QueuePool

from threadline.server.store.percentile import register as register_percentile
from threadline.server.store.wal import BACKSTOP_PAGES, JOURNAL_SIZE_LIMIT, WalCheckpointer

Dialect = Literal["sqlite", "postgresql"]


#: Every PostgreSQL connection plans each statement for its own parameter values (see _postgres_session).
POSTGRES_PLAN_CACHE_MODE = "force_custom_plan"


def _postgres_session(dbapi_conn: Any, _record: Any) -> None:
    """Settings of every PostgreSQL connection: plans made for the parameters they run with.

    psycopg prepares a statement after a few runs, and PostgreSQL then may switch to one generic
    plan for all parameter values. Projects differ in size by orders of magnitude, so the generic
    plan of a search made on a 1M-span project (the ``tsvector`` index first) ran for a 10-session
    project too: 260 ms instead of 5 (bench.query). ``force_custom_plan`` plans each run with its
    values (about 0.5 ms); statements are still parsed once. Write transactions go back to
    ``auto`` (:meth:`Store.write`): the writer's statements gain from cached plans.
    """
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True
    dbapi_conn.execute(f"SET plan_cache_mode = {POSTGRES_PLAN_CACHE_MODE}")
    dbapi_conn.autocommit = autocommit


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


def _sqlite_pragmas(synchronous: str, *, writer: bool, ingest_writer: bool = False,
                    checkpointed_elsewhere: bool = False) -> list[str]:
    # Page cache per connection: the writer gets 16 MiB, each reader 8 MiB, so the server's
    # processes stay under 300 MB of RSS on a multi-GB database.
    tuning = []
    if writer and ingest_writer:
        # Checkpoints run in a background thread (.wal), and commits only write the log: the
        # fsync that makes them durable is Store.sync(), called before anything is acknowledged.
        tuning = [f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}", f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}"]
        synchronous = "NORMAL"
    elif writer and checkpointed_elsewhere:
        # The ingest writer process checkpoints; a commit here (an annotation) must not copy its
        # log into the file inline.
        tuning = [f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}"]
    return [
        # 8 KiB pages for a new database (an existing one keeps its own): chat-history rows of
        # several KiB need fewer overflow pages and log frames than with the 4 KiB default.
        "PRAGMA page_size=8192",
        *tuning,
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={synchronous}",
        "PRAGMA busy_timeout=30000",
        "PRAGMA foreign_keys=OFF",
        f"PRAGMA cache_size={-16384 if writer else -8192}",
        "PRAGMA temp_store=MEMORY",
        # No memory map: every connection would map the file on its own, and mapped pages count
        # in the process's RSS once per connection (measured: the same query latencies at 1M spans
        # without it, and 100 MB less RSS).
        "PRAGMA mmap_size=0",
        "PRAGMA analysis_limit=1000",
        # Deleted and overwritten content is zeroed, so erased text does not linger in free pages
        # (measured on the ingest benchmark: within run-to-run noise, see docs/security.md).
        "PRAGMA secure_delete=ON",
    ]


def _private_files(database: Path) -> None:
    """Create the database's directory 0700 (when it does not exist) and the database file 0600,
    before SQLite opens it: SQLite gives the ``-wal`` and ``-shm`` files the database file's mode.
    An existing database file (and its ``-wal`` / ``-shm``) readable by others is tightened to 0600."""
    directory = database.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # An empty file is an empty database; OSError: there already (or not creatable: SQLite says why).
    with contextlib.suppress(OSError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        try:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
        except OSError:  # not there, or not ours: SQLite reports what matters when it opens it
            pass


class Store:
    """A handle on one Threadline database.

    ``ingest_writer`` tunes the store for the one process that writes spans in bulk (SQLite;
    no effect on PostgreSQL): the write-ahead log is checkpointed in a background thread instead
    of inside commits (:mod:`.wal`), and a commit returns once the log is written, before it is
    fsynced. The caller makes its commits durable with :meth:`sync` before acknowledging them;
    one fsync then covers every commit made since the last one, while the next transaction is
    already being written.

    ``checkpointed_elsewhere`` (SQLite): another process of this server (the ingest writer)
    checkpoints the log, so this store's own commits leave it alone.
    """

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 6,
                 ingest_writer: bool = False, checkpointed_elsewhere: bool = False) -> None:
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise StoreConfigError(f"malformed database URL: {exc}") from exc
        self.dialect: Dialect = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql"
        self._write_lock = threading.Lock()
        self._checkpointer: WalCheckpointer | None = None
        self._wal_to_sync: str | None = None
        #: The SQLite database file (``None`` on PostgreSQL or in memory).
        self.sqlite_path: str | None = None
        if self.dialect == "sqlite":
            database = parsed.database or ""
            on_disk = bool(database) and database != ":memory:"
            if on_disk:
                _private_files(Path(database))
                self.sqlite_path = database
            ingest_writer = ingest_writer and on_disk
            self._reader = self._sqlite_engine(sqlite_synchronous, writer=False, pool_size=pool_size)
            self._writer = self._sqlite_engine(sqlite_synchronous, writer=True, pool_size=1,
                                               ingest_writer=ingest_writer,
                                               checkpointed_elsewhere=checkpointed_elsewhere)
            if ingest_writer:
                self._checkpointer = WalCheckpointer(database)
                self._checkpointer.start()
                if sqlite_synchronous != "NORMAL":
                    self._wal_to_sync = f"{database}-wal"
        else:
            engine = create_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                connect_args={"connect_timeout": 10},
            )
            event.listen(engine, "connect", _postgres_session)
            self._reader = engine
            self._writer = engine

    def _sqlite_engine(self, synchronous: str, *, writer: bool, pool_size: int, ingest_writer: bool = False,
                       checkpointed_elsewhere: bool = False) -> Engine:
        engine = create_engine(
            self.url, poolclass=QueuePool, pool_size=pool_size, max_overflow=0,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            register_percentile(dbapi_conn)
            cursor = dbapi_conn.cursor()
            for pragma in _sqlite_pragmas(synchronous, writer=writer, ingest_writer=ingest_writer,
                                          checkpointed_elsewhere=checkpointed_elsewhere):
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
                # Writes run the same few statements with ever new values, where a cached generic
                # plan saves the planning (custom plans cost the ingest writer a quarter of its speed).
                tx.exec_driver_sql("SET LOCAL plan_cache_mode = auto")
                yield tx

    def sync(self) -> None:
        """Make every commit so far durable (``ingest_writer`` on SQLite: fsync the write-ahead log;
        otherwise commits are durable already and this does nothing). Raises ``OSError``."""
        if self._wal_to_sync is None:
            return
        fd = os.open(self._wal_to_sync, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

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
        """Close every pooled connection (and stop the background checkpoints)."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._reader.dispose()
        if self._writer is not self._reader:
            self._writer.dispose()


def open_store(url: str, *, sqlite_synchronous: str = "FULL", migrate: bool = True, pool_size: int = 6,
               ingest_writer: bool = False, checkpointed_elsewhere: bool = False) -> Store:
    """Open a store and bring its schema to the newest migration (unless ``migrate`` is false)."""
    store = Store(url, sqlite_synchronous=sqlite_synchronous, pool_size=pool_size, ingest_writer=ingest_writer,
                  checkpointed_elsewhere=checkpointed_elsewhere)
    if migrate:
        from threadline.server.store.migrate import upgrade

        upgrade(store)
    return store
