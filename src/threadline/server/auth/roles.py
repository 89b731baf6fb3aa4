"""The one home of roles and permissions (DESIGN §9).

An API key has one of :data:`KEY_ROLES`; a person (a UI login) one of :data:`USER_ROLES`. What a
role may do is :data:`ROLE_ACTIONS`; a route declares the :class:`Action` it needs, never a role.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """A role of an API key or a user."""

    INGEST = "ingest"
    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"


class Action(StrEnum):
    """What a request does, as far as permissions go."""

    INGEST = "ingest"  # send spans (OTLP)
    READ = "read"  # read projects, sessions, users, traces, spans, annotations, metrics, settings
    WRITE = "write"  # annotate, close sessions, run evaluations
    ADMIN = "admin"  # keys, users, project settings, annotation configs, erasure


ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.INGEST: frozenset({Action.INGEST}),
    Role.VIEWER: frozenset({Action.READ}),
    Role.MEMBER: frozenset({Action.READ, Action.WRITE}),
    Role.ADMIN: frozenset(Action),
}
"""What each role may do."""

KEY_ROLES: tuple[Role, ...] = tuple(Role)
"""Roles an API key can have."""

USER_ROLES: tuple[Role, ...] = (Role.VIEWER, Role.MEMBER, Role.ADMIN)
"""Roles a person can have (people do not send spans)."""


def parse_role(value: str, allowed: tuple[Role, ...] = KEY_ROLES) -> Role:
    """The role named ``value``; ``ValueError`` naming the choices when it is not one of ``allowed``."""
    try:
        role = Role(value.strip().lower())
    except ValueError:
        role = None
    if role is None or role not in allowed:
        raise ValueError(f"unknown role {value!r}; choose one of {', '.join(allowed)}")
    return role


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: an API key, a logged-in user, or (auth off) the local operator."""

    kind: str  # "key" | "user" | "local"
    name: str
    role: Role
    projects: frozenset[str] | None = None  # None: every project
    csrf_token: str | None = None  # a login's CSRF token (cookie-authenticated requests only)

    def may(self, action: Action) -> bool:
        """Whether the role allows ``action`` (in some project)."""
        return action in ROLE_ACTIONS[self.role]

    def reaches(self, project: str) -> bool:
        """Whether ``project`` is within the projects this principal is limited to."""
        return self.projects is None or project in self.projects


LOCAL = Principal(kind="local", name="local", role=Role.ADMIN)
"""Every request when auth is off (the server is reachable on loopback only)."""
