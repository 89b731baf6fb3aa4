"""Request-scoped helpers shared by the API routers: a read connection and time parameters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection

from threadline.server.store.engine import Store


def read_conn(request: Request) -> Iterator[Connection]:
    """A read connection for the duration of the request."""
    store: Store = request.app.state.store
    with store.read() as conn:
        yield conn


ReadConn = Annotated[Connection, Depends(read_conn)]
