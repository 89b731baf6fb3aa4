"""API keys: created (only the digest is kept), listed, revoked, and looked up by their secret.

Keys live in the shared database, so every server process on one PostgreSQL accepts the same
keys, and a revoked key stops working at once everywhere (each request looks its key up).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from threadline.server.auth.secrets_ import digest, new_key
from threadline.server.store import schema as t

#: Characters of a key kept in the clear to tell keys apart in a list (``tl_`` and four more).
HINT_CHARS = 7


class KeyExists(ValueError):
    """A key of that name exists already."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    name: str
    role: str
    projects: tuple[str, ...] | None  # None: every project
    hint: str
    created_ns: int


def _row_key(row: Any) -> ApiKey:
    return ApiKey(
        name=row.name, role=row.role, projects=tuple(json.loads(row.projects)) if row.projects is not None else None,
        hint=row.hint, created_ns=row.created_ns,
    )


def create_key(tx: Connection, name: str, role: str, projects: Sequence[str] | None, now_ns: int) -> tuple[ApiKey, str]:
    """Store a new key; returns it and its secret (the only time the secret exists outside the caller)."""
    secret = new_key()
    k = t.api_keys
    values = {"name": name, "role": role, "projects": json.dumps(sorted(set(projects))) if projects else None,
              "digest": digest(secret), "hint": secret[:HINT_CHARS], "created_ns": now_ns}
    try:
        with tx.begin_nested():
            tx.execute(insert(k).values(**values))
    except IntegrityError as exc:
        raise KeyExists(f"a key named {name!r} exists already; revoke it first or choose another name") from exc
    return _row_key(SimpleNamespace(**values)), secret


def list_keys(conn: Connection) -> list[ApiKey]:
    """Every key, by name."""
    k = t.api_keys
    return [_row_key(row) for row in conn.execute(select(k).order_by(k.c.name))]


def revoke_key(tx: Connection, name: str) -> bool:
    """Delete the key called ``name``; ``False`` when there is none."""
    k = t.api_keys
    return bool(tx.execute(delete(k).where(k.c.name == name)).rowcount)


def key_for_secret(conn: Connection, secret: str) -> ApiKey | None:
    """The key whose secret is ``secret``, or ``None``."""
    k = t.api_keys
    row = conn.execute(select(k).where(k.c.digest == digest(secret))).first()
    return _row_key(row) if row is not None else None
