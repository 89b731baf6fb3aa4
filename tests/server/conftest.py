"""Servers shared by the tests of one module (one per backend), so the suite stays quick."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.databases import BACKENDS, fresh_database
from support.server import ServerProcess, new_server

#: Small request limits for the status-code tests: easy to exceed, still fine for normal batches.
MAX_REQUEST_BYTES = 64 * 1024
MAX_DECOMPRESSED_BYTES = 256 * 1024


@pytest.fixture(scope="module", params=BACKENDS)
def shared_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[ServerProcess]:
    """A real ``threadline serve`` on a fresh database of each backend, shared by one test module.

    Tests that share it use their own project names, so they never see each other's data. A
    module may set ``SERVER_ENV`` (a dict of ``THREADLINE_*`` variables) to configure it.
    """
    env: dict[str, str] = getattr(request.module, "SERVER_ENV", {})
    tmp = tmp_path_factory.mktemp(f"server-{request.param}")
    with fresh_database(request.param, tmp) as url:
        server = new_server(url, tmp / "home", **env).start()
        try:
            yield server
        finally:
            server.stop()
        log = server.log()
        assert "Traceback" not in log, log[-5000:]
