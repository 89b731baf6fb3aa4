"""One server per backend for the whole API module, filled once through the real OTLP exporter."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from support.databases import BACKENDS, fresh_database
from support.server import ServerProcess, new_server

from .traffic import Conversation, send_conversations, standard_conversations


@dataclass
class Filled:
    """A running server plus what the test sent to it."""

    server: ServerProcess
    client: httpx.Client
    project: str
    conversations: list[Conversation] = field(default_factory=list)


@pytest.fixture(scope="module", params=BACKENDS)
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    tmp = tmp_path_factory.mktemp(f"api-{request.param}")
    with fresh_database(request.param, tmp) as url:
        server = new_server(url, tmp / "home").start()
        try:
            conversations = standard_conversations()
            send_conversations(server.base_url + "/v1/traces", "contract", conversations)
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                yield Filled(server, client, "contract", conversations)
        finally:
            server.stop()
