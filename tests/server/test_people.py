"""People and their logins (DESIGN §9), on both stores, against a real ``threadline serve``.

Users are made with ``threadline users create`` (password on stdin), as an operator would; the
login page is used as a browser would (its pre-login cookie and hidden field, a form body, the
login cookie). The login cookie opens UI pages and REST reads; a cookie-authenticated write needs
the login's CSRF token; logout ends it at once, on every server sharing the database.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from support.databases import fresh_database
from support.otlp import SpanMaker, TurnSpec, export_http
from support.server import ServerProcess

from .rest import q

FORM = "application/x-www-form-urlencoded"
LOGIN_COOKIE = "threadline_login"
PASSWORD = "correct horse battery"
ServerFactory = Callable[..., ServerProcess]


def threadline(db_url: str, home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``threadline`` command line on ``db_url`` (stdin is not a terminal)."""
    env = {**os.environ, "THREADLINE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "threadline", *args, "--db", db_url], env=env, input=stdin or "",
                          capture_output=True, text=True, timeout=120)


def create_user(db_url: str, home: Path, name: str, role: str, password: str = PASSWORD) -> None:
    done = threadline(db_url, home, "users", "create", name, "--role", role, stdin=password + "\n")
    assert done.returncode == 0, done.stderr


def create_key(db_url: str, home: Path, name: str, role: str) -> str:
    """A new key made by ``threadline keys create`` (the last line of its output)."""
    done = threadline(db_url, home, "keys", "create", "--name", name, "--role", role)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def ingest_session(server: ServerProcess, key: str) -> tuple[str, str]:
    """One session of one turn, sent over OTLP/HTTP with ``key``; returns its project and id."""
    project, session_id = f"people-{uuid.uuid4().hex[:6]}", "s-1"
    maker = SpanMaker(project)
    spans = maker.turn(TurnSpec(question="hello?", answer="hi!", session_id=session_id, user_id="u-1"))
    maker.shutdown()
    assert export_http(spans, server.otlp_http_url, headers={"authorization": f"Bearer {key}"})
    api = httpx.Client(base_url=server.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # poll until the writer stored it
        if api.get(f"/v1/projects/{q(project)}/sessions/{q(session_id)}").status_code == 200:
            return project, session_id
        time.sleep(0.05)
    raise AssertionError("the session was not stored")


def browser(server: ServerProcess) -> httpx.Client:
    """A client that keeps cookies and does not follow redirects (so each one can be checked)."""
    return httpx.Client(base_url=server.base_url, timeout=30, follow_redirects=False)


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden field {name!r} in the page"
    return match.group(1)


def meta_csrf(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "no csrf-token meta in the page"
    return match.group(1)


def log_in(client: httpx.Client, name: str, password: str, next_path: str = "/") -> httpx.Response:
    """Open the login page and post its form."""
    page = client.get("/login", params={"next": next_path})
    assert page.status_code == 200, page.text
    return client.post("/login", data={"csrf": hidden(page.text, "csrf"), "next": hidden(page.text, "next"),
                                       "name": name, "password": password})


def login_set_cookie(response: httpx.Response) -> str:
    values = [v for v in response.headers.get_list("set-cookie") if v.startswith(f"{LOGIN_COOKIE}=")]
    assert len(values) == 1, response.headers
    return values[0]


def test_users_command_line(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "cli"
    create_user(db_url, home, "alice", "member")
    again = threadline(db_url, home, "users", "create", "alice", "--role", "viewer", stdin=PASSWORD + "\n")
    assert again.returncode != 0 and "exists already" in again.stderr
    short = threadline(db_url, home, "users", "create", "bob", "--role", "viewer", stdin="short\n")
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
    empty = threadline(db_url, home, "users", "create", "bob", "--role", "viewer", stdin="")
    assert empty.returncode != 0 and "must not be empty" in empty.stderr
    ingest = threadline(db_url, home, "users", "create", "bob", "--role", "ingest", stdin=PASSWORD + "\n")
    assert ingest.returncode != 0
    listed = threadline(db_url, home, "users", "list")
    assert listed.returncode == 0 and "alice" in listed.stdout and "member" in listed.stdout
    assert "bob" not in listed.stdout and PASSWORD not in listed.stdout
    unknown = threadline(db_url, home, "users", "delete", "nobody")
    assert unknown.returncode != 0 and "no user named" in unknown.stderr
    assert threadline(db_url, home, "users", "delete", "alice").returncode == 0
    assert "alice" not in threadline(db_url, home, "users", "list").stdout


def test_login_cookie_csrf_and_logout(db_url: str, tmp_path: Path, server_factory: ServerFactory) -> None:
    home = tmp_path / "cli"
    create_user(db_url, home, "mia", "member")
    key = create_key(db_url, home, "seed", "admin")
    server = server_factory(db_url, THREADLINE_AUTH="true")
    project, session_id = ingest_session(server, key)
    close_url = f"/v1/projects/{q(project)}/sessions/{q(session_id)}/close"

    with browser(server) as client:
        # Not logged in: a page leads to the login page (coming back after), the API answers 401.
        page = client.get(f"/projects/{q(project)}/sessions", params={"q": "x"})
        assert page.status_code == 303
        assert page.headers["location"] == f"/login?next=/projects/{q(project)}/sessions%3Fq%3Dx"
        assert client.get("/v1/projects").status_code == 401
        assert client.get("/static/app.js").status_code == 200  # the login page needs it

        wrong = log_in(client, "mia", "not the password")
        assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
        nobody = log_in(client, "nobody", PASSWORD)
        assert nobody.status_code == 401 and "Wrong name or password" in nobody.text

        done = log_in(client, "mia", PASSWORD, next_path=f"/projects/{q(project)}/sessions")
        assert done.status_code == 303 and done.headers["location"] == f"/projects/{q(project)}/sessions"
        cookie = login_set_cookie(done).lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert "max-age=43200" in cookie and "secure" not in cookie

        home_page = client.get("/")
        assert home_page.status_code == 200 and project in home_page.text
        assert "mia" in home_page.text and 'action="/logout"' in home_page.text
        csrf = meta_csrf(home_page.text)
        session_page = client.get(f"/projects/{q(project)}/sessions/{q(session_id)}")
        assert session_page.status_code == 200 and 'data-annotate-kind="session"' in session_page.text
        assert "data-close-session" in session_page.text and "data-idle-form" not in session_page.text  # member
        assert client.get("/v1/projects").status_code == 200

        # A cookie-authenticated write needs the login's CSRF token.
        no_token = client.post(close_url, json={})
        assert no_token.status_code == 403 and no_token.json()["error"]["code"] == "csrf"
        assert client.post(close_url, json={}, headers={"x-csrf-token": "wrong"}).status_code == 403
        assert client.post(close_url, json={}, headers={"x-csrf-token": csrf}).status_code == 200
        # A member may not change project settings.
        settings = client.put(f"/v1/projects/{q(project)}/settings", json={"idle_timeout_seconds": 60},
                              headers={"x-csrf-token": csrf})
        assert settings.status_code == 403 and settings.json()["error"]["code"] == "forbidden"

        # A safe `next` only: another host is never a target.
        evil = client.get("/login", params={"next": "//evil.test/x"})
        assert evil.status_code == 303 and evil.headers["location"] == "/"

        # Logout needs the CSRF token, then the cookie no longer works (kept by hand to try it).
        token = client.cookies[LOGIN_COOKIE]
        assert client.post("/logout", data={"csrf": "wrong"}).status_code == 403
        out = client.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert LOGIN_COOKIE not in client.cookies
    with browser(server) as stale:
        stale.cookies.set(LOGIN_COOKIE, token)
        assert stale.get("/").status_code == 303
        assert stale.get("/v1/projects").status_code == 401


def test_failed_logins_are_throttled(db_url: str, tmp_path: Path, server_factory: ServerFactory) -> None:
    home = tmp_path / "cli"
    create_user(db_url, home, "tom", "viewer")
    server = server_factory(db_url, THREADLINE_AUTH="true", THREADLINE_LOGIN_MAX_FAILURES="2")
    with browser(server) as client:
        for name in ("tom", "nobody"):  # an unknown name is throttled alike (no user enumeration)
            assert log_in(client, name, "wrong password").status_code == 401
            assert log_in(client, name, "wrong password").status_code == 401
            throttled = log_in(client, name, PASSWORD)
            assert throttled.status_code == 429, throttled.text
            assert int(throttled.headers["retry-after"]) >= 1 and "try again in" in throttled.text
        # Waiting out the lock (1 s after the 2nd failure), the right password works again.
        deadline = time.monotonic() + 30
        while (answer := log_in(client, "tom", PASSWORD)).status_code == 429:
            assert time.monotonic() < deadline, "still throttled"
            time.sleep(0.1)
        assert answer.status_code == 303
        assert client.get("/").status_code == 200


def test_admin_password_creates_admin_on_first_start_only(db_url: str, tmp_path: Path,
                                                           server_factory: ServerFactory) -> None:
    first = server_factory(db_url, THREADLINE_AUTH="true", THREADLINE_ADMIN_PASSWORD="first admin password")
    assert "created the user 'admin'" in first.log() and "first admin password" not in first.log()
    with browser(first) as client:
        assert log_in(client, "admin", "first admin password").status_code == 303
        page = client.get("/")
        assert page.status_code == 200 and "admin" in page.text
    first.stop()
    second = server_factory(db_url, THREADLINE_AUTH="true", THREADLINE_ADMIN_PASSWORD="another password!")
    assert "created the user 'admin'" not in second.log()
    with browser(second) as client:
        assert log_in(client, "admin", "another password!").status_code == 401
        assert log_in(client, "admin", "first admin password").status_code == 303
    listed = threadline(db_url, tmp_path / "cli", "users", "list")
    assert listed.stdout.count("admin") == 2  # one user: its name and its role


def test_viewer_may_read_but_not_write(db_url: str, tmp_path: Path, server_factory: ServerFactory) -> None:
    home = tmp_path / "cli"
    create_user(db_url, home, "vic", "viewer")
    key = create_key(db_url, home, "seed", "admin")
    server = server_factory(db_url, THREADLINE_AUTH="true")
    project, session_id = ingest_session(server, key)
    with browser(server) as client:
        assert log_in(client, "vic", PASSWORD).status_code == 303
        page = client.get(f"/projects/{q(project)}/sessions/{q(session_id)}")
        assert page.status_code == 200
        assert "data-annotate-kind" not in page.text and 'id="annotate-form"' not in page.text
        assert "data-close-session" not in page.text and "data-idle-form" not in page.text
        csrf = meta_csrf(page.text)
        for method, path, body in (
            ("POST", f"/v1/projects/{q(project)}/sessions/{q(session_id)}/close", {}),
            ("POST", f"/v1/projects/{q(project)}/annotations",
             {"target_kind": "session", "target_id": session_id, "name": "tone", "label": "ok"}),
            ("PUT", f"/v1/projects/{q(project)}/settings", {"idle_timeout_seconds": 60}),
        ):
            answer = client.request(method, path, json=body, headers={"x-csrf-token": csrf})
            assert answer.status_code == 403, (path, answer.text)
            assert answer.json()["error"]["code"] == "forbidden"
        assert client.get(f"/v1/projects/{q(project)}/sessions").status_code == 200


def test_two_servers_on_one_postgresql_share_logins(tmp_path: Path, server_factory: ServerFactory) -> None:
    with fresh_database("postgres", tmp_path) as url:
        create_user(url, tmp_path / "cli", "sam", "member")
        one = server_factory(url, THREADLINE_AUTH="true")
        two = server_factory(url, THREADLINE_AUTH="true")
        with browser(one) as a, browser(two) as b:
            assert log_in(a, "sam", PASSWORD).status_code == 303
            b.cookies.set(LOGIN_COOKIE, a.cookies[LOGIN_COOKIE])
            page = b.get("/")
            assert page.status_code == 200 and "sam" in page.text
            assert b.post("/logout", data={"csrf": meta_csrf(page.text)}).status_code == 303
            assert a.get("/").status_code == 303  # logged out everywhere at once
            assert a.get("/v1/projects").status_code == 401
        one.stop()
        two.stop()


@pytest.mark.parametrize("path", ["/login", "/logout"])
def test_auth_off_has_nothing_to_log_into(path: str, db_url: str, server_factory: ServerFactory) -> None:
    server = server_factory(db_url)
    with browser(server) as client:
        answer = client.get(path) if path == "/login" else client.post(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        page = client.get("/")
        assert page.status_code == 200 and 'action="/logout"' not in page.text
