"""API key and login token secrets: made from ``secrets``, stored only as a SHA-256 digest.

A key is 256 random bits, so a plain digest is as strong as a slow password hash against
guessing, and checking it costs microseconds on every OTLP request (a slow hash would not).
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "tl_"


def new_key() -> str:
    """A new API key: ``tl_`` and 43 URL-safe characters."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_token() -> str:
    """A new login or CSRF token."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """The stored form of a key or token (hex SHA-256)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
