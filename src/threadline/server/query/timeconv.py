"""Conversions between stored integer nanoseconds and the model's UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime


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


def percentile(values: list[float], fraction: float) -> float | None:
    """Linear-interpolation percentile (``fraction`` in 0..1) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 3)
