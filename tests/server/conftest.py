"""Servers shared by the tests of this package (one per backend), so the suite stays quick."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.databases import BACKENDS, fresh_database
from support.server import ServerProcess, new_server

#: Small request limits for the status-code tests: easy to exceed, still fine for normal batches.
MAX_REQUEST_BYTES = 64 * 1024
MAX_DECOMPRESSED_BYTES = 256 * 1024


def _serve(backend: str, tmp_path_factory: pytest.TempPathFactory, **env: str) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp(f"server-{backend}")
    with fresh_database(backend, tmp) as url:
        server = new_server(url, tmp / "home", **env).start()
        try:
            yield server
        finally:
            server.stop()
        log = server.log()
        assert "Traceback" not in log, log[-5000:]


@pytest.fixture(scope="package", params=BACKENDS)
def shared_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[ServerProcess]:
    """A real ``threadline serve`` with default settings on each backend, shared by this package.

    Tests that share it use their own project names, so they never see each other's data.
    """
    yield from _serve(request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=BACKENDS)
def limited_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[ServerProcess]:
    """A shared server with small request limits (:data:`MAX_REQUEST_BYTES`, :data:`MAX_DECOMPRESSED_BYTES`)."""
    yield from _serve(request.param, tmp_path_factory, THREADLINE_MAX_REQUEST_BYTES=str(MAX_REQUEST_BYTES),
                      THREADLINE_MAX_DECOMPRESSED_BYTES=str(MAX_DECOMPRESSED_BYTES))
