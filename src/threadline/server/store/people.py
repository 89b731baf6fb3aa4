"""People (UI users) and their logins. Passwords are argon2id hashes; login tokens SHA-256 digests.

Both live in the shared database, so every server process on one PostgreSQL knows the same
people and accepts the same logins; deleting a person or a login ends it at once everywhere
(each request looks its login up). Failed logins in a row are counted per person: from
``max_failures`` on, the person must wait before the next try (:func:`lockout_ns`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from threadline.server.auth.roles import Principal, Role
from threadline.server.auth.secrets_ import digest, new_token
from threadline.server.store import schema as t

SECOND_NS = 1_000_000_000
#: The first wait after ``max_failures`` failed logins in a row; it doubles with each further one.
FIRST_WAIT_NS = SECOND_NS
#: The longest wait.
MAX_WAIT_NS = 15 * 60 * SECOND_NS


class PersonExists(ValueError):
    """A person of that name exists already."""


@dataclass(frozen=True, slots=True)
class Person:
    """A stored person (the password only as its hash)."""

    id: int
    name: str
    role: str
    password_hash: str
    failed_logins: int
    locked_until_ns: int | None
    created_ns: int


@dataclass(frozen=True, slots=True)
class Login:
    """A new login: the cookie's token (never stored) and the login's CSRF token."""

    token: str
    csrf_token: str
    expires_ns: int


def _row_person(row: Any) -> Person:
    return Person(id=row.id, name=row.name, role=row.role, password_hash=row.password_hash,
                  failed_logins=row.failed_logins, locked_until_ns=row.locked_until_ns, created_ns=row.created_ns)


def lockout_ns(failures: int, max_failures: int) -> int:
    """How long to wait after ``failures`` failed logins in a row: nothing below ``max_failures``,
    then 1 s, doubling with each further failure, at most 15 minutes."""
    if failures < max_failures:
        return 0
    doublings = failures - max_failures
    if doublings >= 20:  # 2**20 s is far beyond the cap
        return MAX_WAIT_NS
    return min(FIRST_WAIT_NS << doublings, MAX_WAIT_NS)


# --- people -----------------------------------------------------------------------------------------

def create_person(tx: Connection, name: str, role: str, password_hash: str, now_ns: int) -> Person:
    """Store a new person; :class:`PersonExists` when the name is taken."""
    p = t.people
    try:
        with tx.begin_nested():
            new_id = tx.execute(insert(p).values(
                name=name, role=role, password_hash=password_hash, failed_logins=0, locked_until_ns=None,
                created_ns=now_ns).returning(p.c.id)).scalar_one()
    except IntegrityError as exc:
        raise PersonExists(f"a user named {name!r} exists already; delete them first or choose another name") from exc
    return Person(id=int(new_id), name=name, role=role, password_hash=password_hash, failed_logins=0,
                  locked_until_ns=None, created_ns=now_ns)


def find_person(conn: Connection, name: str) -> Person | None:
    """The person called ``name``, or ``None``."""
    p = t.people
    row = conn.execute(select(p).where(p.c.name == name)).first()
    return _row_person(row) if row is not None else None


def list_people(conn: Connection) -> list[Person]:
    """Every person, by name."""
    p = t.people
    return [_row_person(row) for row in conn.execute(select(p).order_by(p.c.name))]


def count_people(conn: Connection) -> int:
    """How many people there are."""
    return int(conn.execute(select(func.count()).select_from(t.people)).scalar_one())


def delete_person(tx: Connection, name: str) -> bool:
    """Delete the person called ``name`` and end their logins; ``False`` when there is none."""
    p = t.people
    person_id = tx.execute(select(p.c.id).where(p.c.name == name)).scalar_one_or_none()
    if person_id is None:
        return False
    tx.execute(delete(t.logins).where(t.logins.c.person_id == person_id))
    tx.execute(delete(p).where(p.c.id == person_id))
    return True


def set_password_hash(tx: Connection, person_id: int, password_hash: str) -> None:
    """Replace a person's password hash (a rehash with newer parameters, or a new password)."""
    p = t.people
    tx.execute(update(p).where(p.c.id == person_id).values(password_hash=password_hash))


def record_failed_login(tx: Connection, person_id: int, now_ns: int, max_failures: int) -> int | None:
    """Count a failed login of the person; returns until when they must now wait (``None``: no wait).

    The count is incremented in the database (not from a value read earlier), so concurrent
    failures on several servers all count.
    """
    p = t.people
    failures = tx.execute(update(p).where(p.c.id == person_id).values(failed_logins=p.c.failed_logins + 1)
                          .returning(p.c.failed_logins)).scalar_one_or_none()
    if failures is None:
        return None
    wait = lockout_ns(int(failures), max_failures)
    locked_until = now_ns + wait if wait else None
    tx.execute(update(p).where(p.c.id == person_id).values(locked_until_ns=locked_until))
    return locked_until


def record_successful_login(tx: Connection, person_id: int) -> None:
    """Reset the person's count of failed logins."""
    p = t.people
    tx.execute(update(p).where(p.c.id == person_id).values(failed_logins=0, locked_until_ns=None))


# --- logins -----------------------------------------------------------------------------------------

def create_login(tx: Connection, person_id: int, now_ns: int, session_hours: float) -> Login:
    """Store a new login of the person (only the digest of its token); expired logins are deleted."""
    delete_expired_logins(tx, now_ns)
    token, csrf = new_token(), new_token()
    expires = now_ns + int(session_hours * 3600 * SECOND_NS)
    tx.execute(insert(t.logins).values(digest=digest(token), person_id=person_id, csrf_token=csrf,
                                       created_ns=now_ns, expires_ns=expires))
    return Login(token=token, csrf_token=csrf, expires_ns=expires)


def principal_for_login(conn: Connection, token: str, now_ns: int) -> Principal | None:
    """The person logged in with the session cookie ``token`` (unexpired), or ``None``."""
    lg, p = t.logins, t.people
    row = conn.execute(
        select(p.c.name, p.c.role, lg.c.csrf_token).select_from(lg.join(p, p.c.id == lg.c.person_id))
        .where(lg.c.digest == digest(token), lg.c.expires_ns > now_ns)
    ).first()
    if row is None:
        return None
    return Principal(kind="user", name=row.name, role=Role(row.role), csrf_token=row.csrf_token)


def delete_login(tx: Connection, token: str) -> bool:
    """End the login of the cookie ``token`` (logout); ``False`` when there was none."""
    return bool(tx.execute(delete(t.logins).where(t.logins.c.digest == digest(token))).rowcount)


def delete_expired_logins(tx: Connection, now_ns: int) -> int:
    """Delete every expired login; returns how many."""
    return int(tx.execute(delete(t.logins).where(t.logins.c.expires_ns <= now_ns)).rowcount)
