"""The gate every transport asks: who sent this request, and may they do it?

Transport-neutral: the REST API, both OTLP/HTTP ports and OTLP/gRPC hand it the credentials they
received (a ``Bearer`` key, or the UI's login cookie) and map its :class:`Verdict` to their own
answer (HTTP 401/403, gRPC ``UNAUTHENTICATED`` / ``PERMISSION_DENIED``). With auth off every
request acts as :data:`~.roles.LOCAL` (an admin), which is only allowed on loopback ports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from threadline.server.auth.roles import LOCAL, Action, Principal, Role
from threadline.server.store import people
from threadline.server.store.credentials import key_for_secret
from threadline.server.store.engine import Store

BEARER = "bearer"


class Outcome(Enum):
    """How a request fares at the gate."""

    ALLOWED = "allowed"
    UNAUTHENTICATED = "unauthenticated"  # 401 / UNAUTHENTICATED
    FORBIDDEN = "forbidden"  # 403 / PERMISSION_DENIED


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gate's answer: the outcome, who asked (when known) and a message for the client."""

    outcome: Outcome
    principal: Principal | None
    message: str = ""

    @property
    def allowed(self) -> bool:
        """Whether the request may go on."""
        return self.outcome is Outcome.ALLOWED


def bearer_secret(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value, or ``None``."""
    if not authorization:
        return None
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    return secret if scheme.lower() == BEARER and secret else None


class Gate:
    """Authenticates credentials against the store and checks a principal's permissions."""

    def __init__(self, store: Store, *, enabled: bool) -> None:
        self.store = store
        self.enabled = enabled

    def identify(self, authorization: str | None, login_token: str | None = None) -> Principal | None:
        """Who presents these credentials: an API key (``Authorization``) first, else a UI login.

        ``None`` when auth is on and neither is valid; :data:`LOCAL` when auth is off.
        """
        if not self.enabled:
            return LOCAL
        secret = bearer_secret(authorization)
        with self.store.read() as conn:
            if secret is not None:
                key = key_for_secret(conn, secret)
                if key is None:
                    return None
                return Principal(kind="key", name=key.name, role=Role(key.role),
                                 projects=frozenset(key.projects) if key.projects is not None else None)
            if login_token:
                return people.principal_for_login(conn, login_token, time.time_ns())
        return None

    def check(self, principal: Principal | None, action: Action, project: str | None = None, *,
              global_scope: bool = False) -> Verdict:
        """May ``principal`` do ``action`` (in ``project``; across every project when ``global_scope``)?"""
        if principal is None:
            return Verdict(Outcome.UNAUTHENTICATED, None,
                           "missing or invalid credentials: send an API key as 'Authorization: Bearer <key>'")
        if not principal.may(action):
            return Verdict(Outcome.FORBIDDEN, principal,
                           f"the {principal.kind} {principal.name!r} has role {principal.role.value}, "
                           f"which may not {action.value}")
        if global_scope and principal.projects is not None:
            return Verdict(Outcome.FORBIDDEN, principal,
                           f"the {principal.kind} {principal.name!r} is limited to some projects; "
                           "this needs a key for every project")
        if project is not None and not principal.reaches(project):
            return Verdict(Outcome.FORBIDDEN, principal,
                           f"the {principal.kind} {principal.name!r} may not access project {project!r}")
        return Verdict(Outcome.ALLOWED, principal)
