"""Errors the query layer raises for a caller's mistake (the API answers them with 400)."""

from __future__ import annotations


class InvalidQuery(ValueError):
    """A filter, sort or cursor that cannot be used; the message says what to fix."""
