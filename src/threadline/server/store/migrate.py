"""Apply the Alembic migrations in ``store/migrations`` (on every start; cheap when current).

Several processes may start at once against one PostgreSQL database: the upgrade runs under a
transaction-scoped advisory lock so that only one of them migrates.

A revision whose data conversion is long defines ``convert_before_upgrade(write)``: it runs before
the revision's schema change, in batches of its own transactions (each opened by ``write()``,
under the same lock), so an interrupted conversion resumes where it stopped at the next start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from threadline.server.store.engine import Store

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_ADVISORY_LOCK_KEY = 0x7468_7265_6164  # "thread"


def alembic_config(store: Store) -> Config:
    """An Alembic config pointing at our migrations and the store's URL."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", store.url.replace("%", "%%"))
    return config


def upgrade(store: Store, revision: str = "head") -> None:
    """Bring the store's schema up to ``revision``."""
    config = alembic_config(store)
    _convert_before_upgrade(store, config, revision)
    with _locked_write(store) as tx:
        config.attributes["connection"] = tx
        command.upgrade(config, revision)


@contextmanager
def _locked_write(store: Store) -> Iterator[Connection]:
    """A write transaction holding the migration lock (PostgreSQL; SQLite writers are serialized)."""
    with store.write() as tx:
        if store.dialect == "postgresql":
            tx.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_KEY})")
        yield tx


def _convert_before_upgrade(store: Store, config: Config, revision: str) -> None:
    """Run the ``convert_before_upgrade`` steps of the pending revisions, oldest first."""
    from alembic.script import ScriptDirectory

    current = current_revision(store)
    if current is None:  # a new database: nothing stored to convert
        return
    pending = list(ScriptDirectory.from_config(config).iterate_revisions(revision, current))
    for script in reversed(pending):
        step = getattr(script.module, "convert_before_upgrade", None)
        if step is not None:
            step(lambda: _locked_write(store))


def current_revision(store: Store) -> str | None:
    """The schema revision the store is at (``None`` before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with store.read() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this version of Threadline."""
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()
