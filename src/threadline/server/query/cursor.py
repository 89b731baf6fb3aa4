"""Opaque keyset-pagination cursors: the sort key of a row, base64url-encoded JSON.

A forward cursor (``next_cursor``) holds the sort key of a page's last row: the next page starts
strictly after it. A backward cursor (``prev_cursor``) holds the key of a page's first row plus a
direction mark: the page it opens ends strictly before that row. Both are just cursors to a client.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Float, Table, and_, select, tuple_

from threadline.server.query.errors import InvalidQuery


def encode(*values: Any) -> str:
    """A cursor for the row whose sort key is ``values``."""
    raw = json.dumps(list(values), separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


#: Appended to the sort key in a backward cursor (told apart from a forward one by the key's length).
BACKWARD = "<"
UNCHANGED = "invalid cursor: pass the next_cursor or prev_cursor value of another page unchanged"


def _load(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidQuery(UNCHANGED) from exc
    if not isinstance(values, list):
        raise InvalidQuery(UNCHANGED)
    return values


def decode(cursor: str, types: tuple[type, ...]) -> list[Any]:
    """The sort key inside ``cursor``, checked against ``types`` (raise :class:`InvalidQuery`)."""
    return _check(_load(cursor), types)


def decode_keyset(cursor: str, types: tuple[type, ...]) -> tuple[list[Any], bool]:
    """The sort key inside a forward or backward cursor, and whether it is backward."""
    values = _load(cursor)
    if len(values) == len(types) + 1 and values[-1] == BACKWARD:
        return _check(values[:-1], types), True
    return _check(values, types), False


def _check(values: list[Any], types: tuple[type, ...]) -> list[Any]:
    if len(values) != len(types):
        raise InvalidQuery(UNCHANGED)
    for value, kind in zip(values, types, strict=True):
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise InvalidQuery("invalid cursor: it does not belong to this list or sort order")
    return values


@dataclass(frozen=True, slots=True)
class KeysetPage:
    """The rows of one page in list order, the cursor of the page after it and of the page before it."""

    rows: list[Any]
    next_cursor: str | None
    prev_cursor: str | None


def keyset_page(
    conn: Connection, table: Table, conditions: list[Any], column: Any, id_column: Any, *, descending: bool,
    limit: int, cursor: str | None,
) -> KeysetPage:
    """One page of ``table`` rows ordered by ``(column, id_column)``, with the cursors around it.

    A forward cursor opens the ``limit`` rows strictly after its row; a backward cursor the
    ``limit`` rows strictly before its row (read in reverse order on the same index, then turned
    round). A backward walk that reaches the start of the list answers the first page, full, so
    "previous" from the second page is always exactly the first page even after rows came or went.
    """
    value_type: type = float if isinstance(column.type, Float) else int
    key = tuple_(column, id_column)
    backward = False
    bound_conditions = list(conditions)
    if cursor:
        (value, row_id), backward = decode_keyset(cursor, (value_type, str))
        bound = tuple_(value, row_id)
        bound_conditions.append(key < bound if descending != backward else key > bound)
    forward_order = [column.desc(), id_column.desc()] if descending else [column.asc(), id_column.asc()]
    backward_order = [column.asc(), id_column.asc()] if descending else [column.desc(), id_column.desc()]
    query = select(table).where(and_(*bound_conditions))
    rows = list(conn.execute(query.order_by(*(backward_order if backward else forward_order)).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    if backward:
        if not more:  # reached the start: the first page
            return keyset_page(conn, table, conditions, column, id_column, descending=descending, limit=limit,
                               cursor=None)
        rows.reverse()
        return KeysetPage(rows, _key(rows[-1], column, id_column), _key(rows[0], column, id_column, BACKWARD))
    next_cursor = _key(rows[-1], column, id_column) if more else None
    prev_cursor = _key(rows[0], column, id_column, BACKWARD) if cursor and rows else None
    return KeysetPage(rows, next_cursor, prev_cursor)


def _key(row: Any, column: Any, id_column: Any, *mark: str) -> str:
    return encode(getattr(row, column.key), getattr(row, id_column.key), *mark)
