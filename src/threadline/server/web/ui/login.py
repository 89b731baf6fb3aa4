"""Logging into the web UI: ``GET``/``POST /login``, ``POST /logout``, and what a browser sees when refused.

- The login form is protected against login CSRF by a double-submit token: ``GET /login`` sets
  :data:`PRELOGIN_COOKIE` (HttpOnly, SameSite=Strict, path ``/login``) and puts the same value in
  a hidden field; ``POST /login`` needs both, equal.
- A successful login stores a login row (only the digest of its token) and sets
  :data:`~threadline.server.web.access.LOGIN_COOKIE`: HttpOnly, SameSite=Strict, ``Path=/``,
  ``Secure`` over https, ``Max-Age`` the login's lifetime; then 303 to a local ``next``.
- Failed logins are counted per person in the database (shared by every server), and per unknown
  name in this process, so an unknown name is throttled like a known one: from
  ``login_max_failures`` failures in a row the name must wait (1 s, doubling, at most 15 min) and
  gets 429 with ``Retry-After``, even with the right password.
- ``POST /logout`` needs the login's CSRF token (hidden field or header), deletes the login row
  and the cookie.
- :func:`ui_access_denied` turns a refused UI request into a redirect to the login page (401) or a
  small HTML page (403); the REST API keeps its JSON answers.
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from threadline.server.auth.passwords import hash_password, needs_rehash, verify
from threadline.server.auth.roles import Principal
from threadline.server.auth.secrets_ import new_token
from threadline.server.settings import Settings
from threadline.server.store import people
from threadline.server.store.engine import Store
from threadline.server.web.access import CSRF_HEADER, LOGIN_COOKIE, AccessDenied, principal_of
from threadline.server.web.api.errors import error_response
from threadline.server.web.ui.render import SECURITY_HEADERS, access_context, html_response

log = logging.getLogger("threadline.login")

router = APIRouter(include_in_schema=False)

#: The login form's double-submit CSRF cookie (set by ``GET /login``, sent only to ``/login``).
PRELOGIN_COOKIE = "threadline_prelogin"
PRELOGIN_MAX_AGE = 3600
#: A login form body is small; anything bigger is not one.
MAX_FORM_BYTES = 16 * 1024
MAX_NAME_CHARS = 200
WRONG = "Wrong name or password."
#: Unknown names whose failures are remembered (the oldest are forgotten first).
MAX_UNKNOWN_NAMES = 10_000


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a login attempt came to."""

    status: int  # 303 (logged in), 401 (wrong), 429 (throttled)
    token: str | None = None
    retry_after_s: int = 0


class UnknownNames:
    """Failed logins of names that are nobody's, counted like a person's (so the throttle does not
    tell which names exist). In memory: a bounded map, per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, tuple[int, int | None]] = OrderedDict()

    def locked_until(self, name: str) -> int | None:
        """Until when ``name`` must wait (``None``: it may try)."""
        with self._lock:
            entry = self._failures.get(name)
        return entry[1] if entry else None

    def failed(self, name: str, now_ns: int, max_failures: int) -> None:
        """Count a failure of ``name``."""
        with self._lock:
            failures = self._failures.pop(name, (0, None))[0] + 1
            wait = people.lockout_ns(failures, max_failures)
            self._failures[name] = (failures, now_ns + wait if wait else None)
            while len(self._failures) > MAX_UNKNOWN_NAMES:
                self._failures.popitem(last=False)


def _unknown_names(request: Request) -> UnknownNames:
    state = request.app.state
    if not hasattr(state, "unknown_login_names"):
        state.unknown_login_names = UnknownNames()
    names: UnknownNames = state.unknown_login_names
    return names


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this server (one leading ``/``, no scheme or host), else ``/``."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ord(ch) < 0x20 or ch in "\\\x7f" for ch in value):
        return "/"
    if value == "/login" or value.startswith(("/login?", "/logout")):
        return "/"
    return value


def login_url(next_path: str) -> str:
    """The login page that leads back to ``next_path``."""
    return "/login" if next_path == "/" else f"/login?next={quote(next_path, safe='/')}"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _prelogin_token(request: Request) -> str:
    token = request.cookies.get(PRELOGIN_COOKIE, "")
    return token if 20 <= len(token) <= 100 and token.replace("-", "").replace("_", "").isalnum() else new_token()


def _login_page(request: Request, status: int, *, next_path: str, name: str = "", message: str = "",
                headers: dict[str, str] | None = None) -> HTMLResponse:
    token = _prelogin_token(request)
    response = html_response("login.html", status_code=status, headers=headers, project=None, projects=[],
                             tab="login", next=next_path, name=name, message=message, prelogin=token,
                             **access_context(None))
    response.set_cookie(PRELOGIN_COOKIE, token, max_age=PRELOGIN_MAX_AGE, path="/login", httponly=True,
                        samesite="strict", secure=_secure(request))
    return response


async def _form(request: Request) -> dict[str, str] | None:
    """The fields of a form-encoded body (first value of each), or ``None`` when it is not one."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {key: values[0] for key, values in fields.items() if values}


def _attempt(store: Store, settings: Settings, unknown: UnknownNames, name: str, password: str) -> Attempt:
    """Check ``name`` and ``password`` (throttled); a login's token when they are right."""
    now = time.time_ns()
    storable = 0 < len(name) <= MAX_NAME_CHARS and "\x00" not in name
    with store.read() as conn:
        person = people.find_person(conn, name) if storable else None
    locked_until = person.locked_until_ns if person is not None else unknown.locked_until(name)
    if locked_until is not None and locked_until > now:
        return Attempt(429, retry_after_s=max(1, math.ceil((locked_until - now) / 1e9)))
    if not verify(person.password_hash if person is not None else None, password):
        if person is None:
            unknown.failed(name, now, settings.login_max_failures)
        else:
            with store.write() as tx:
                people.record_failed_login(tx, person.id, now, settings.login_max_failures)
        return Attempt(401)
    assert person is not None
    with store.write() as tx:
        people.record_successful_login(tx, person.id)
        if needs_rehash(person.password_hash):
            people.set_password_hash(tx, person.id, hash_password(password))
        login = people.create_login(tx, person.id, now, settings.login_session_hours)
    return Attempt(303, token=login.token)


@router.get("/login", response_model=None)
def login_page(request: Request) -> Response:
    """The login form (with auth off there is nothing to log into: ``/``)."""
    next_path = safe_next(request.query_params.get("next"))
    if not request.app.state.gate.enabled:
        return RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
    principal = principal_of(request)
    if principal is not None and principal.kind == "user":
        return RedirectResponse(next_path, status_code=303, headers=SECURITY_HEADERS)
    return _login_page(request, 200, next_path=next_path)


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    """Check the name and password; on success set the login cookie and go to ``next``."""
    if not request.app.state.gate.enabled:
        return RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
    form = await _form(request)
    if form is None:
        return _login_page(request, 400, next_path="/", message="Send the login form.")
    next_path = safe_next(form.get("next"))
    name = form.get("name", "").strip()
    sent, expected = form.get("csrf", ""), request.cookies.get(PRELOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return _login_page(request, 403, next_path=next_path, name=name,
                           message="The login form expired or came from another site: log in again.")
    settings = _settings(request)
    attempt = await run_in_threadpool(_attempt, request.app.state.store, settings, _unknown_names(request),
                                      name, form.get("password", ""))
    if attempt.status == 429:
        seconds = attempt.retry_after_s
        when = time.strftime("%H:%M:%S", time.gmtime(time.time() + seconds))
        return _login_page(request, 429, next_path=next_path, name=name, headers={"Retry-After": str(seconds)},
                           message=f"Too many failed logins for this name: try again in {seconds} s "
                           f"(after {when} UTC).")
    if attempt.status == 401 or attempt.token is None:
        return _login_page(request, 401, next_path=next_path, name=name, message=WRONG)
    log.info("user %r logged in", name)
    response = RedirectResponse(next_path, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(LOGIN_COOKIE, attempt.token, max_age=int(settings.login_session_hours * 3600), path="/",
                        httponly=True, samesite="strict", secure=_secure(request))
    response.delete_cookie(PRELOGIN_COOKIE, path="/login", httponly=True, samesite="strict", secure=_secure(request))
    return response


@router.post("/logout", response_model=None)
async def logout(request: Request) -> Response:
    """End the login (its CSRF token is needed) and go to the login page."""
    if not request.app.state.gate.enabled:
        return RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
    token = request.cookies.get(LOGIN_COOKIE)
    principal = await run_in_threadpool(principal_of, request)
    if token and principal is not None and principal.kind == "user":
        form = await _form(request) or {}
        sent = form.get("csrf") or request.headers.get(CSRF_HEADER, "")
        if not principal.csrf_token or not hmac.compare_digest(sent.encode(), principal.csrf_token.encode()):
            return refused_page(request, 403, "Not allowed",
                                "The logout form expired: reload the page and log out again.")
        store: Store = request.app.state.store

        def end() -> None:
            with store.write() as tx:
                people.delete_login(tx, token)

        await run_in_threadpool(end)
        log.info("user %r logged out", principal.name)
    response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(LOGIN_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return response


# --- refused UI requests ------------------------------------------------------------------------------

def is_ui_path(path: str) -> bool:
    """Whether ``path`` belongs to the web UI (not the REST API, OTLP or the health check)."""
    return not (path == "/v1" or path.startswith("/v1/") or path == "/healthz")


def refused_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """A small HTML page for a refused UI request (with the header of whoever is logged in)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return html_response("error.html", status_code=status, title=title, message=message, project=None,
                         projects=[], tab="", **access_context(principal))


def ui_access_denied(request: Request, exc: AccessDenied) -> Response:
    """The answer to a refused request: for a UI page a redirect to the login page (401) or an HTML
    page (403); for a UI fragment a bare status; anything else the API's JSON error."""
    path = request.url.path
    if not is_ui_path(path):
        response: Response = error_response(exc.status, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response
    if exc.status == 401 and request.method == "GET" and "/fragments/" not in path:
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(login_url(safe_next(target)), status_code=303, headers=SECURITY_HEADERS)
    if exc.status == 401:
        return refused_page(request, 401, "Log in", "Your login has ended: reload the page to log in again.")
    return refused_page(request, 403, "Not allowed", exc.message or "Your role does not allow this.")
