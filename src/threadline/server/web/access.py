"""Access control for the HTTP routes: who is asking (API key or login cookie) and may they.

Every REST router declares the :class:`~threadline.server.auth.roles.Action` it needs with
:func:`allow`; the dependency asks the runtime's :class:`~threadline.server.auth.gate.Gate` and
answers 401 (with ``WWW-Authenticate: Bearer``) or 403 in the API's error shape. A request
authenticated by the login cookie that changes anything must also carry the login's CSRF token
in :data:`CSRF_HEADER`. The principal is left in ``request.state.principal`` for the UI.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request

from threadline.server.auth.gate import Gate, Outcome, Verdict
from threadline.server.auth.roles import Action, Principal
from threadline.server.web.api.errors import ApiError
from threadline.server.web.browser import SAFE_METHODS

#: The UI's login cookie (HttpOnly, SameSite=Strict; Secure over https).
LOGIN_COOKIE = "threadline_login"
#: Header carrying a login's CSRF token on state-changing requests made by the UI.
CSRF_HEADER = "x-csrf-token"


class AccessDenied(ApiError):
    """A request the gate refused (401 or 403)."""

    def __init__(self, verdict: Verdict) -> None:
        unauthenticated = verdict.outcome is Outcome.UNAUTHENTICATED
        super().__init__(401 if unauthenticated else 403, "unauthenticated" if unauthenticated else "forbidden",
                         verdict.message, {"WWW-Authenticate": "Bearer"} if unauthenticated else None)
        self.verdict = verdict


def gate_of(request: Request) -> Gate:
    """The runtime's gate."""
    gate: Gate = request.app.state.gate
    return gate


def principal_of(request: Request) -> Principal | None:
    """Who sent ``request`` (cached on the request); ``None`` when auth is on and nobody valid."""
    if not hasattr(request.state, "principal"):
        request.state.principal = gate_of(request).identify(
            request.headers.get("authorization"), request.cookies.get(LOGIN_COOKIE))
    principal: Principal | None = request.state.principal
    return principal


def authorize(request: Request, action: Action, project: str | None = None, *, global_scope: bool = False
              ) -> Principal:
    """The principal of ``request`` if it may do ``action`` (in ``project``); else :class:`AccessDenied`."""
    principal = principal_of(request)
    verdict = gate_of(request).check(principal, action, project, global_scope=global_scope)
    if not verdict.allowed:
        raise AccessDenied(verdict)
    assert principal is not None
    if principal.kind == "user" and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not principal.csrf_token or not hmac.compare_digest(sent, principal.csrf_token):
            raise ApiError(403, "csrf", f"missing or wrong {CSRF_HEADER} header for this login; reload the page")
    return principal


def allow(action: Action, *, global_scope: bool = False) -> Any:
    """A route dependency: the request may do ``action`` in the path's ``{project}`` (if any).

    ``global_scope``: the action concerns every project (keys, people), so a principal limited to
    some projects is refused.
    """
    def dependency(request: Request) -> Principal:
        return authorize(request, action, request.path_params.get("project"), global_scope=global_scope)

    check: Callable[[Request], Principal] = dependency
    return Depends(check)
