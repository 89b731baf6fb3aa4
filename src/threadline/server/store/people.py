"""People (UI users) and their logins. Passwords are argon2id hashes; login tokens SHA-256 digests."""

from __future__ import annotations

from sqlalchemy import Connection

from threadline.server.auth.roles import Principal


def principal_for_login(conn: Connection, token: str, now_ns: int) -> Principal | None:
    """The person logged in with the session cookie ``token`` (unexpired), or ``None``."""
    return None  # people and logins: being written (issue 10)
