"""Fixtures shared by every test: databases on both backends and a real server process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.databases import BACKENDS, fresh_database
from support.server import ServerProcess, new_server
from threadline.server.store.engine import Store, open_store


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, once on SQLite and once on PostgreSQL."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated store on each backend."""
    s = open_store(db_url)
    yield s
    s.dispose()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``threadline serve`` processes; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(db_url: str, **extra_env: str) -> ServerProcess:
        server = new_server(db_url, tmp_path / f"home{len(started)}", **extra_env)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(db_url: str, server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A running server on each backend."""
    return server_factory(db_url)
