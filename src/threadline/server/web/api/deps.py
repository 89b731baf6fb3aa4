"""Request-scoped helpers shared by the API routers: a read connection and time parameters."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BeforeValidator, WithJsonSchema
from sqlalchemy import Connection

from threadline.server.store.engine import Store


def read_conn(request: Request) -> Iterator[Connection]:
    """A read connection for the duration of the request."""
    store: Store = request.app.state.store
    with store.read() as conn:
        yield conn


ReadConn = Annotated[Connection, Depends(read_conn)]


_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def _rfc3339_only(value: Any) -> Any:
    """Refuse what pydantic would read as a Unix time (``0.5``, ``1700000000``): times are RFC 3339."""
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("not an RFC 3339 time (e.g. 2026-11-21T10:00:00Z)")
    return value


#: A query time: an RFC 3339 date-time with its offset, as the schema's ``format: date-time`` says.
Timestamp = Annotated[datetime, BeforeValidator(_rfc3339_only),
                      WithJsonSchema({"type": "string", "format": "date-time"})]
