"""What the data commands' arguments mean: times (``--since`` / ``--until``) and names that must exist.

One parser for every time argument of ``export``, ``eval run`` and ``metrics``, so the same text
means the same moment everywhere; and one check that the ``--project`` / ``--session`` / ``--user``
a command names is in the store, so a typo (in a deletion request, say) fails loudly instead of
looking like a successful run over nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy import Connection

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TIME_FORMATS = "2026-11-21, 2026-11-21T10:00:00Z (UTC unless an offset is given) or a duration ago: 30m, 24h, 7d, 2w"


def parse_moment(value: str, *, now: datetime | None = None) -> datetime:
    """The UTC moment ``value`` names: an ISO date or date-time, or a duration before ``now``.

    Naive times are UTC; ``Z`` and offsets are honoured. Raises ``ValueError`` for anything else.
    """
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a time: use {TIME_FORMATS}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


if TYPE_CHECKING:
    _ParamType = click.ParamType[datetime]
else:  # click < 8.2: ParamType is not generic
    _ParamType = click.ParamType


class TimeArgument(_ParamType):
    """A click parameter type for :func:`parse_moment` (the value becomes an aware UTC datetime)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        """Parse ``value`` (already a datetime: kept, in UTC)."""
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        try:
            return parse_moment(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


#: The type of every ``--since`` / ``--until`` option.
TIME = TimeArgument()


def require_project(conn: Connection, project: str) -> int:
    """The id of ``project``; a command-line error naming it (and the projects there are) when unknown."""
    from threadline.server.query.projects import list_projects, project_id

    pid = project_id(conn, project)
    if pid is None:
        names = [p.name for p in list_projects(conn)]
        known = ", ".join(repr(n) for n in names[:10]) + (", …" if len(names) > 10 else "")
        hint = f" (projects: {known})" if names else " (the store has no projects)"
        raise click.ClickException(f"no project {project!r} in this store{hint}; nothing was done")
    return pid


def require_known(conn: Connection, project: str, *, sessions: Iterable[str] = (), user: str | None = None) -> int:
    """Check that the project, every session and the user exist; return the project id.

    Raises a :class:`click.ClickException` (exit status 1) naming everything that does not exist.
    """
    from threadline.server.query.sessions import get_session
    from threadline.server.query.users import get_user

    pid = require_project(conn, project)
    missing = [f"session {sid!r}" for sid in dict.fromkeys(sessions)
               if get_session(conn, project, sid, turn_limit=1) is None]
    if user is not None and get_user(conn, project, user, limit=1) is None:
        missing.append(f"user {user!r}")
    if missing:
        raise click.ClickException(f"no {', no '.join(missing)} in project {project!r}; nothing was done")
    return pid
