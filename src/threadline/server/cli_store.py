"""What every data command shares: settings from flags + environment, and the store they name.

``serve``, ``export``, ``erase``, ``doctor``, ``eval`` and ``metrics`` all read the same settings
(``--db`` / ``THREADLINE_DATABASE_URL`` / ``THREADLINE_HOME``) and turn configuration or
connection problems into a command-line message instead of a traceback.
"""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from threadline.server.settings import Settings
from threadline.server.store.engine import Store, StoreConfigError, open_store

#: The ``--db`` option of every command that works on data.
db_option = click.option("--db", "database_url", default=None,
                         help="Database URL (THREADLINE_DATABASE_URL); default SQLite under THREADLINE_HOME.")


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with command-line flags (not ``None``) on top."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'setting'}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(f"invalid configuration: {problems}") from exc


def open_configured_store(database_url: str | None) -> tuple[Settings, Store]:
    """The settings and the migrated store a data command works on."""
    settings = load_settings(database_url=database_url)
    try:
        return settings, open_store(settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous)
    except StoreConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    except OperationalError as exc:
        raise click.ClickException(f"cannot open the database: {exc.orig or exc}") from exc
