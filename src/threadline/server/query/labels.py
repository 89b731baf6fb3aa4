"""Filters on tags and metadata (``tag=``, ``metadata=key:value``) and the project's known tags.

The tags and metadata pairs were read from the spans once, at ingest, into ``trace_tags`` and
``trace_metadata`` (:mod:`threadline.server.store.labels`). A filter is a semi-join: the primary
key range of the tag (or of the key and value) gives the matching traces, ``traces`` by its
unique key gives their sessions; the cost grows with the matches, never with the project's spans.
Every condition must hold (a session matches when some trace of it has the tag and, for each pair,
some trace of it has that pair).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, func, select

from threadline.server.query.errors import InvalidQuery
from threadline.server.store import schema as t

#: ``(key, value)`` pairs a list must match, all of them.
MetadataFilter = tuple[tuple[str, str], ...]
#: At most this many tags are offered to pick from (the first ones in alphabetical order).
KNOWN_TAGS_LIMIT = 200


def parse_metadata_filter(values: Iterable[str]) -> MetadataFilter:
    """``key:value`` texts as pairs (split at the first ``:``; the value may be empty and may hold
    further colons). Blank texts are skipped; one without ``:`` or with an empty key is an
    :class:`InvalidQuery`."""
    pairs: list[tuple[str, str]] = []
    for text in values:
        if not text.strip():
            continue
        key, colon, value = text.partition(":")
        if not colon or not key.strip():
            raise InvalidQuery(f"metadata: {text!r} is not key:value (like metadata=plan:pro)")
        pairs.append((key.strip(), value.strip()))
    return tuple(dict.fromkeys(pairs))


def metadata_param(pairs: MetadataFilter) -> list[str]:
    """The ``metadata=`` values that mean ``pairs`` (links keep them)."""
    return [f"{key}:{value}" for key, value in pairs]


def _traces_with(pid: int, tag: str | None, pair: tuple[str, str] | None) -> Any:
    """The ids of the project's traces with this tag, or with this metadata pair."""
    if tag is not None:
        tt = t.trace_tags
        return select(tt.c.trace_id).where(tt.c.project_id == pid, tt.c.tag == tag)
    assert pair is not None
    tm = t.trace_metadata
    return select(tm.c.trace_id).where(tm.c.project_id == pid, tm.c.key == pair[0], tm.c.value == pair[1])


def _sessions_with(pid: int, tag: str | None, pair: tuple[str, str] | None) -> Any:
    """The sessions having a trace with this tag, or with this metadata pair."""
    matching = _traces_with(pid, tag, pair).subquery()
    tr = t.traces
    return (select(tr.c.session_id)
            .select_from(matching.join(tr, and_(tr.c.project_id == pid, tr.c.trace_id == matching.c.trace_id)))
            .where(tr.c.session_id.is_not(None)))


def session_label_conditions(pid: int, tag: str | None, metadata: MetadataFilter) -> list[Any]:
    """WHERE conditions on ``sessions``: some trace of the session has ``tag``, and for every pair some
    trace of the session has it."""
    s = t.sessions
    conditions = []
    if tag is not None and tag.strip():
        conditions.append(s.c.session_id.in_(_sessions_with(pid, tag.strip(), None)))
    for pair in metadata:
        conditions.append(s.c.session_id.in_(_sessions_with(pid, None, pair)))
    return conditions


def trace_label_conditions(pid: int, tag: str | None, metadata: MetadataFilter) -> list[Any]:
    """WHERE conditions on ``traces``: the trace has ``tag`` and every pair."""
    tr = t.traces
    conditions = []
    if tag is not None and tag.strip():
        conditions.append(tr.c.trace_id.in_(_traces_with(pid, tag.strip(), None)))
    for pair in metadata:
        conditions.append(tr.c.trace_id.in_(_traces_with(pid, None, pair)))
    return conditions


def known_tags(conn: Connection, pid: int, limit: int = KNOWN_TAGS_LIMIT) -> list[str]:
    """The project's distinct tags in alphabetical order, at most ``limit``.

    One primary-key seek per tag (the next tag after the last one found), so the cost is the
    number of tags listed, whatever the number of tagged traces.
    """
    tt = t.trace_tags
    found: list[str] = []
    after: str | None = None
    while len(found) < limit:
        query = select(func.min(tt.c.tag)).where(tt.c.project_id == pid)
        if after is not None:
            query = query.where(tt.c.tag > after)
        tag = conn.execute(query).scalar()
        if tag is None:
            break
        found.append(tag)
        after = tag
    return found
