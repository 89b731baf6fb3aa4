"""Matching a part of an id: the users list's ``q`` and the sessions' ``user_id_contains``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func


def escape_like(text: str) -> str:
    """``text`` with the LIKE wildcards ``%`` and ``_`` (and the escape ``\\``) escaped by ``\\``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def id_contains(column: Any, part: str) -> Any:
    """``column`` contains ``part`` (stripped), case-insensitive, with no wildcard in ``part``."""
    return func.lower(column).like(f"%{escape_like(part.strip().lower())}%", escape="\\")
