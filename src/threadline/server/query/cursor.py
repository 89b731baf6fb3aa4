"""Opaque keyset-pagination cursors: the sort key of the last row, base64url-encoded JSON."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from sqlalchemy import Connection, Float, Table, and_, select, tuple_

from threadline.server.query.errors import InvalidQuery


def encode(*values: Any) -> str:
    """A cursor for the row whose sort key is ``values``."""
    raw = json.dumps(list(values), separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, types: tuple[type, ...]) -> list[Any]:
    """The sort key inside ``cursor``, checked against ``types`` (raise :class:`InvalidQuery`)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidQuery("invalid cursor: pass the next_cursor value of the previous page unchanged") from exc
    if not isinstance(values, list) or len(values) != len(types):
        raise InvalidQuery("invalid cursor: pass the next_cursor value of the previous page unchanged")
    for value, kind in zip(values, types, strict=True):
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise InvalidQuery("invalid cursor: it does not belong to this list or sort order")
    return values


def keyset_page(
    conn: Connection, table: Table, conditions: list[Any], column: Any, id_column: Any, *, descending: bool,
    limit: int, cursor: str | None,
) -> tuple[list[Any], str | None]:
    """One page of ``table`` rows ordered by ``(column, id_column)``, and the cursor of the next page.

    The cursor holds the sort key of the page's last row; the next page starts strictly after it.
    """
    conditions = list(conditions)
    if cursor:
        value_type: type = float if isinstance(column.type, Float) else int
        last_value, last_id = decode(cursor, (value_type, str))
        key, bound = tuple_(column, id_column), tuple_(last_value, last_id)
        conditions.append(key < bound if descending else key > bound)
    ordering = [column.desc(), id_column.desc()] if descending else [column.asc(), id_column.asc()]
    rows = list(conn.execute(select(table).where(and_(*conditions)).order_by(*ordering).limit(limit + 1)).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode(getattr(rows[-1], column.key), getattr(rows[-1], id_column.key))
