"""Password hashing for UI users: argon2id (argon2-cffi's ``PasswordHasher`` and its defaults).

:func:`verify` of a person that does not exist still verifies a dummy hash, so a login takes as
long for an unknown name as for a known one (no user enumeration by timing).
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: The shortest password ``threadline users create`` accepts.
MIN_PASSWORD_LENGTH = 8


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id, RFC 9106 low-memory parameters


@cache
def _dummy_hash() -> str:
    return _hasher().hash("threadline: no such user")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted; the stored form)."""
    return _hasher().hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; with ``None`` (no such person) a dummy hash
    is verified for the same cost and the answer is ``False``."""
    try:
        matched = _hasher().verify(password_hash if password_hash is not None else _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than today's (rehash it on the next login)."""
    return _hasher().check_needs_rehash(password_hash)


def password_problem(password: str) -> str | None:
    """Why ``password`` is refused (empty or too short), or ``None``."""
    if not password:
        return "the password must not be empty"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
    return None
