"""Model dataclasses → JSON-ready values (RFC 3339 UTC times with milliseconds and ``Z``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any


def rfc3339(moment: datetime) -> str:
    """``2026-11-21T10:00:00.123Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_json(value: Any) -> Any:
    """Recursively convert dataclasses, datetimes, lists and dicts into JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value
