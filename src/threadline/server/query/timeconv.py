"""Conversions between stored integer nanoseconds and the model's UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime

from threadline.server.store.percentile import percentile as percentile  # the one rule, re-exported


def to_datetime(ns: int) -> datetime:
    """UTC datetime of an epoch-nanosecond timestamp."""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def to_ns(moment: datetime) -> int:
    """Epoch nanoseconds of a datetime (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1000


def ms(ns: int) -> float:
    """Nanoseconds as milliseconds, rounded to microseconds."""
    return round(ns / 1e6, 3)
