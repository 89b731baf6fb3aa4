"""Browser safety on a real server (DESIGN §9): the Host allow-list and cross-site refusal.

* A ``Host`` outside ``THREADLINE_ALLOWED_HOSTS`` (default: localhost, 127.0.0.1, ::1 and the
  bind address) is answered 400 on the main port and the OTLP/HTTP port (DNS rebinding);
  ``/healthz`` answers any host.
* A state-changing request whose ``Origin`` (or ``Referer``) is another site's is refused with
  403 and changes nothing; so is a form-encoded, multipart or text/plain body sent to a JSON
  route, whatever its origin. Requests without either header (SDKs, exporters, curl) pass.
* All of it holds with auth on as with auth off, and comes before authentication.

The shared default server of this package serves the tests on both stores; servers with other
settings run on SQLite only (the checks happen before any route touches a database).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from google.rpc.status_pb2 import Status

from support.otlp import JSON, PROTOBUF, SpanMaker, TurnSpec, export_http, json_body, protobuf_body
from support.server import ServerProcess

from .rest import Api, q

FORM = "application/x-www-form-urlencoded"
EVIL = "http://evil.test"


def error_code(response: httpx.Response) -> str:
    """The ``code`` of an API error response."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    code: str = response.json()["error"]["code"]
    return code


def rpc_status(response: httpx.Response) -> Status:
    """The ``google.rpc.Status`` body of an OTLP error response, in the request's encoding."""
    if response.headers["content-type"].startswith(JSON):
        return Status(code=response.json()["code"], message=response.json()["message"])
    return Status.FromString(response.content)


def new_session(server: ServerProcess, prefix: str, headers: dict[str, str] | None = None) -> tuple[str, str]:
    """A project and one open session in it, sent with the SDK's OTLP/HTTP exporter; their names."""
    project, session_id = f"{prefix}-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    maker = SpanMaker(project)
    spans = maker.turn(TurnSpec(question="hello", answer="hi", session_id=session_id, user_id="u1"))
    maker.shutdown()
    assert export_http(spans, f"{server.base_url}/v1/traces", headers=headers).name == "SUCCESS"
    return project, session_id


def session_closed(server: ServerProcess, project: str, session_id: str, **headers: str) -> bool:
    """Whether the session is closed, asked over the REST API."""
    response = httpx.get(f"{server.base_url}/v1/projects/{q(project)}/sessions/{q(session_id)}/state",
                         headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    closed: bool = response.json()["closed"]
    return closed


def close(server: ServerProcess, project: str, session_id: str, content: bytes | None = None, /,
          **headers: str) -> httpx.Response:
    """``POST …/close`` with exactly the given headers (no Origin unless given)."""
    return httpx.post(f"{server.base_url}/v1/projects/{q(project)}/sessions/{q(session_id)}/close",
                      content=content, headers=headers, timeout=30)


# --- Host allow-list ---------------------------------------------------------------------------------


def test_foreign_host_is_refused_on_the_main_port(shared_server: ServerProcess) -> None:
    url = f"{shared_server.base_url}/v1/projects"
    for host in ("evil.test", f"evil.test:{shared_server.port}", "127.0.0.1.evil.test", "localhost.evil.test:80"):
        response = httpx.get(url, headers={"Host": host}, timeout=30)
        assert response.status_code == 400, (host, response.text)
        assert error_code(response) == "host_not_allowed"
        assert "THREADLINE_ALLOWED_HOSTS" in response.json()["error"]["message"]
    # The UI is refused too, and a write is refused before it changes anything.
    assert httpx.get(f"{shared_server.base_url}/", headers={"Host": "evil.test"}, timeout=30).status_code == 400
    project, session_id = new_session(shared_server, "rebinding")
    response = close(shared_server, project, session_id, b"{}",
                     **{"Host": "evil.test", "Content-Type": "application/json"})
    assert response.status_code == 400
    assert not session_closed(shared_server, project, session_id)


def test_default_hosts_are_the_loopback_names(shared_server: ServerProcess) -> None:
    url = f"{shared_server.base_url}/v1/projects"
    for host in (f"127.0.0.1:{shared_server.port}", f"localhost:{shared_server.port}", "LOCALHOST",
                 f"[::1]:{shared_server.port}", "localhost."):
        response = httpx.get(url, headers={"Host": host}, timeout=30)
        assert response.status_code == 200, (host, response.text)


def test_healthz_answers_any_host(shared_server: ServerProcess) -> None:
    """A load balancer probes by IP address: /healthz says only "up", so it skips the Host check."""
    response = httpx.get(f"{shared_server.base_url}/healthz", headers={"Host": "10.1.2.3:6006"}, timeout=30)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_foreign_host_is_refused_on_the_otlp_port_in_the_otlp_shape(shared_server: ServerProcess) -> None:
    project = f"otlp-rebinding-{uuid.uuid4().hex[:8]}"
    maker = SpanMaker(project)
    spans = maker.turn(TurnSpec(question="q", answer="a", session_id="s1"))
    maker.shutdown()
    for url in (shared_server.otlp_http_url, f"{shared_server.base_url}/v1/traces"):
        for media, body in ((PROTOBUF, protobuf_body(spans)), (JSON, json_body(spans))):
            response = httpx.post(url, content=body, headers={"Host": "evil.test", "Content-Type": media},
                                  timeout=30)
            assert response.status_code == 400, response.text
            assert response.headers["content-type"].startswith(media)
            status = rpc_status(response)
            assert status.code == 3  # INVALID_ARGUMENT
            assert "THREADLINE_ALLOWED_HOSTS" in status.message
    other = httpx.get(f"http://127.0.0.1:{shared_server.otlp_http_port}/anything", headers={"Host": "evil.test"},
                      timeout=30)
    assert other.status_code == 400
    assert error_code(other) == "host_not_allowed"
    assert Api(shared_server.base_url).project(project) == {}


def test_allowed_hosts_setting(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    named = server_factory(f"sqlite:///{tmp_path / 'named.db'}",
                           THREADLINE_ALLOWED_HOSTS="threadline.example.com, *.corp.test")
    for port in (named.port, named.otlp_http_port):  # an empty export: accepted on both ports
        accepted = httpx.post(f"http://127.0.0.1:{port}/v1/traces", content=protobuf_body([]),
                              headers={"Host": "threadline.example.com", "Content-Type": PROTOBUF}, timeout=30)
        assert accepted.status_code == 200, accepted.text
        refused = httpx.post(f"http://127.0.0.1:{port}/v1/traces", content=protobuf_body([]),
                             headers={"Host": f"127.0.0.1:{port}", "Content-Type": PROTOBUF}, timeout=30)
        assert refused.status_code == 400
    for host in ("threadline.example.com", f"THREADLINE.example.com:{named.port}", "a.corp.test", "b.a.corp.test"):
        response = httpx.get(f"{named.base_url}/v1/projects", headers={"Host": host}, timeout=30)
        assert response.status_code == 200, (host, response.text)
    for host in ("localhost", "127.0.0.1", "corp.test", "example.com", "evil.test"):  # the list replaces the default
        response = httpx.get(f"{named.base_url}/v1/projects", headers={"Host": host}, timeout=30)
        assert response.status_code == 400, (host, response.text)
    assert httpx.get(f"{named.base_url}/healthz", timeout=30).status_code == 200

    anyone = server_factory(f"sqlite:///{tmp_path / 'any.db'}", THREADLINE_ALLOWED_HOSTS="*")
    for host in ("evil.test", "10.0.0.7:6006", "[fe80::1]"):
        response = httpx.get(f"{anyone.base_url}/v1/projects", headers={"Host": host}, timeout=30)
        assert response.status_code == 200, (host, response.text)


# --- cross-site requests -----------------------------------------------------------------------------


def test_foreign_origin_cannot_close_a_session(shared_server: ServerProcess) -> None:
    project, session_id = new_session(shared_server, "csrf")
    own = shared_server.base_url
    attempts: list[dict[str, Any]] = [
        {"content": b"x=1", "Content-Type": FORM, "Origin": EVIL},  # the example
        {"content": b"{}", "Content-Type": "application/json", "Origin": EVIL},
        {"content": None, "Origin": "https://evil.test"},
        {"content": None, "Origin": "null"},  # sandboxed frames, file: pages
        {"content": None, "Origin": f"http://127.0.0.1:{shared_server.otlp_http_port}"},  # another port
        {"content": None, "Origin": f"http://localhost:{shared_server.port}"},  # another host name
        {"content": None, "Referer": f"{EVIL}/page.html"},  # no Origin: the Referer decides
        {"content": None, "Origin": EVIL, "Referer": f"{own}/sessions"},  # Origin wins
    ]
    for attempt in attempts:
        content = attempt.pop("content")
        response = close(shared_server, project, session_id, content, **attempt)
        assert response.status_code == 403, (attempt, response.text)
        assert error_code(response) == "cross_origin"
        assert not session_closed(shared_server, project, session_id)
    # Deleting is a state change too.
    response = httpx.delete(f"{own}/v1/projects/{q(project)}/annotations/nothing", headers={"Origin": EVIL},
                            timeout=30)
    assert response.status_code == 403
    assert error_code(response) == "cross_origin"

    # The UI's own fetch() (same origin, JSON) works, as does a page's own Referer.
    response = close(shared_server, project, session_id, b"{}",
                     **{"Origin": own, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert session_closed(shared_server, project, session_id)
    other_project, other_session = new_session(shared_server, "csrf-referer")
    response = close(shared_server, other_project, other_session, Referer=f"{own}/projects/{other_project}")
    assert response.status_code == 200, response.text


def test_form_and_text_bodies_are_refused_on_json_routes(shared_server: ServerProcess) -> None:
    """A form a foreign page posts may carry no Origin (old browsers): its media type gives it away."""
    project, session_id = new_session(shared_server, "form-body")
    for media in (FORM, "multipart/form-data; boundary=x", "text/plain", "text/plain;charset=UTF-8", "Text/Plain"):
        response = close(shared_server, project, session_id, b"{}", **{"Content-Type": media})
        assert response.status_code == 403, (media, response.text)
        assert error_code(response) == "form_body"
        assert not session_closed(shared_server, project, session_id)
    # Same origin does not make a form body acceptable on a JSON route.
    response = close(shared_server, project, session_id, b"a=b",
                     **{"Content-Type": FORM, "Origin": shared_server.base_url})
    assert response.status_code == 403
    assert error_code(response) == "form_body"
    # No Origin, no Referer, JSON or no body at all: SDKs, scripts and curl go through.
    assert close(shared_server, project, session_id).status_code == 200
    assert session_closed(shared_server, project, session_id)


def test_otlp_post_from_a_foreign_page_is_refused(shared_server: ServerProcess) -> None:
    project = f"otlp-csrf-{uuid.uuid4().hex[:8]}"
    maker = SpanMaker(project)
    spans = maker.turn(TurnSpec(question="q", answer="a", session_id="s1"))
    maker.shutdown()
    for url in (shared_server.otlp_http_url, f"{shared_server.base_url}/v1/traces"):
        for media, body in ((PROTOBUF, protobuf_body(spans)), (JSON, json_body(spans))):
            response = httpx.post(url, content=body, headers={"Origin": EVIL, "Content-Type": media}, timeout=30)
            assert response.status_code == 403, response.text
            status = rpc_status(response)
            assert status.code == 7  # PERMISSION_DENIED
            assert "evil.test" in status.message
    assert Api(shared_server.base_url).project(project) == {}
    # An exporter sends no Origin: accepted (and /v1/traces keeps its own 415 for text/plain).
    assert export_http(spans, shared_server.otlp_http_url).name == "SUCCESS"
    text = httpx.post(shared_server.otlp_http_url, content=b"x", headers={"Content-Type": "text/plain"}, timeout=30)
    assert text.status_code == 415


def test_login_form_stays_possible_from_our_own_origin(shared_server: ServerProcess) -> None:
    """``POST /login`` is form-encoded: only another site's Origin is refused there, not the media type."""
    own = httpx.post(f"{shared_server.base_url}/login", content=b"username=a&password=b",
                     headers={"Content-Type": FORM, "Origin": shared_server.base_url}, timeout=30)
    if own.headers.get("content-type", "").startswith("application/json"):
        assert own.json().get("error", {}).get("code") not in {"cross_origin", "form_body", "host_not_allowed"}
    foreign = httpx.post(f"{shared_server.base_url}/login", content=b"username=a&password=b",
                         headers={"Content-Type": FORM, "Origin": EVIL}, timeout=30)
    assert foreign.status_code == 403
    assert error_code(foreign) == "cross_origin"


# --- with auth on ------------------------------------------------------------------------------------


def create_key(db_url: str, home: Path, name: str, role: str) -> str:
    """A new key made by ``threadline keys create`` (the last line of its output)."""
    done = subprocess.run([sys.executable, "-m", "threadline", "keys", "create", "--name", name, "--role", role,
                           "--db", db_url], env={**os.environ, "THREADLINE_HOME": str(home)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_browser_safety_holds_with_auth_on(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'auth.db'}"
    key = create_key(db_url, tmp_path / "cli", "admin-key", "admin")
    server = server_factory(db_url, THREADLINE_AUTH="true")
    bearer = {"Authorization": f"Bearer {key}"}
    project, session_id = new_session(server, "auth-csrf", headers=bearer)

    # Refused before authentication: no credentials needed to see the 400/403, none help past them.
    unauthenticated = httpx.get(f"{server.base_url}/v1/projects", headers={"Host": "evil.test"}, timeout=30)
    assert unauthenticated.status_code == 400
    assert error_code(unauthenticated) == "host_not_allowed"
    with_key = httpx.get(f"{server.base_url}/v1/projects", headers={"Host": "evil.test", **bearer}, timeout=30)
    assert with_key.status_code == 400
    response = close(server, project, session_id, b"x=1", **{"Content-Type": FORM, "Origin": EVIL}, **bearer)
    assert response.status_code == 403
    assert error_code(response) == "cross_origin"
    response = close(server, project, session_id, b"x=1", **{"Content-Type": FORM}, **bearer)
    assert response.status_code == 403
    assert error_code(response) == "form_body"
    assert not session_closed(server, project, session_id, **bearer)

    # Without a key a same-origin request still needs credentials; with one it works.
    assert close(server, project, session_id, Origin=server.base_url).status_code == 401
    assert close(server, project, session_id, Origin=server.base_url, **bearer).status_code == 200
    assert session_closed(server, project, session_id, **bearer)
