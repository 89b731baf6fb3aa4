"""Who may do what (DESIGN §9): every role against every route family, on both stores.

A real server runs with ``THREADLINE_AUTH=true``; keys are made with ``threadline keys create``
(a separate process on the same database, as an operator would). Each route family is asked
without credentials, with a wrong key, and with a key of each role; keys limited to one project
must neither read nor write another. Revoking a key stops it at once, on every server sharing
the database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc.status_pb2 import Status

from support.databases import BACKENDS, fresh_database
from support.otlp import PROTOBUF, SpanMaker, TurnSpec, export_grpc, export_http, protobuf_body
from support.server import ServerProcess, new_server

from .rest import q

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
ROLES = ("ingest", "viewer", "member", "admin")


def threadline(db_url: str, home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``threadline`` command line on ``db_url``."""
    env = {**os.environ, "THREADLINE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "threadline", *args, "--db", db_url], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def create_key(db_url: str, home: Path, name: str, role: str, *projects: str) -> str:
    """A new key made by ``threadline keys create``: the last line of its output."""
    flags = [arg for project in projects for arg in ("--project", project)]
    done = threadline(db_url, home, "keys", "create", "--name", name, "--role", role, *flags)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@dataclass
class AuthServer:
    """A server with auth on, its keys by name, and two projects with one session each."""

    server: ServerProcess
    keys: dict[str, str]
    db_url: str

    def url(self, path: str) -> str:
        return self.server.base_url + path

    def headers(self, key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys.get(key, key)}"} if key else {}


def turn_spans(project: str, session_id: str) -> list:  # type: ignore[type-arg]
    maker = SpanMaker(project)
    spans = maker.turn(TurnSpec(question="hello?", answer="hi!", session_id=session_id, user_id="u-1"))
    maker.shutdown()
    return spans


@pytest.fixture(scope="module", params=BACKENDS)
def auth_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    tmp = tmp_path_factory.mktemp(f"auth-{request.param}")
    with fresh_database(request.param, tmp) as url:
        home = tmp / "home"
        keys = {role: create_key(url, home, role, role) for role in ROLES}
        keys["viewer-a"] = create_key(url, home, "viewer-a", "viewer", "proj-a")
        keys["ingest-a"] = create_key(url, home, "ingest-a", "ingest", "proj-a")
        keys["admin-a"] = create_key(url, home, "admin-a", "admin", "proj-a")
        server = new_server(url, home, THREADLINE_AUTH="true").start()
        try:
            for project in ("proj-a", "proj-b"):
                assert export_http(turn_spans(project, f"s-{project}"), server.otlp_http_url,
                                   headers={"authorization": f"Bearer {keys['ingest']}"}).name == "SUCCESS"
            yield AuthServer(server, keys, url)
        finally:
            server.stop()
        assert "Traceback" not in server.log(), server.log()[-4000:]


def otlp_post(url: str, key_headers: dict[str, str], project: str | None = None) -> httpx.Response:
    spans = turn_spans(project or "proj-a", f"s-{uuid.uuid4().hex[:8]}")
    headers = {"content-type": PROTOBUF, **key_headers}
    if project is not None:
        headers["x-project-name"] = project
    return httpx.post(url, content=protobuf_body(spans), headers=headers, timeout=30)


# --- OTLP/HTTP (both ports) -----------------------------------------------------------------------

@pytest.mark.parametrize("port", ["main", "otlp"])
@pytest.mark.parametrize(("key", "expected"), [
    (None, 401), ("tl_not-a-key", 401), ("ingest", 200), ("viewer", 403), ("member", 403), ("admin", 200),
])
def test_otlp_http_by_role(auth_server: AuthServer, port: str, key: str | None, expected: int) -> None:
    url = auth_server.url("/v1/traces") if port == "main" else auth_server.server.otlp_http_url
    response = otlp_post(url, auth_server.headers(key))
    assert response.status_code == expected, response.text
    if expected != 200:
        status = Status.FromString(response.content)  # the OTLP error shape
        assert status.code == (16 if expected == 401 else 7) and status.message
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_ingest_key_limited_to_a_project(auth_server: AuthServer) -> None:
    headers = auth_server.headers("ingest-a")
    url = auth_server.server.otlp_http_url
    assert otlp_post(url, headers, "proj-a").status_code == 200
    refused = otlp_post(url, headers, "proj-b")  # named by the header
    assert refused.status_code == 403 and "proj-b" in Status.FromString(refused.content).message
    # Named only by the resource attribute: refused after decoding, and nothing of it is stored.
    session_id = f"s-{uuid.uuid4().hex[:8]}"
    body = protobuf_body(turn_spans("proj-b", session_id))
    response = httpx.post(url, content=body, headers={"content-type": PROTOBUF, **headers}, timeout=30)
    assert response.status_code == 403
    found = httpx.get(auth_server.url(f"/v1/projects/proj-b/sessions/{q(session_id)}"),
                      headers=auth_server.headers("admin"), timeout=30)
    assert found.status_code == 404


def test_sdk_exporters_send_the_key(auth_server: AuthServer) -> None:
    """The real OTLP exporters with an Authorization header, over HTTP and gRPC."""
    session_id = f"s-{uuid.uuid4().hex[:8]}"
    spans = turn_spans("proj-a", session_id)
    headers = {"authorization": f"Bearer {auth_server.keys['ingest']}"}
    assert export_grpc(spans, auth_server.server.grpc_target, headers=headers).name == "SUCCESS"
    assert export_grpc(spans, auth_server.server.grpc_target).name == "FAILURE"
    session = httpx.get(auth_server.url(f"/v1/projects/proj-a/sessions/{q(session_id)}"),
                        headers=auth_server.headers("viewer"), timeout=30)
    assert session.status_code == 200 and session.json()["turns"]


# --- OTLP/gRPC --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "project", "expected"), [
    (None, None, grpc.StatusCode.UNAUTHENTICATED),
    ("tl_not-a-key", None, grpc.StatusCode.UNAUTHENTICATED),
    ("ingest", None, grpc.StatusCode.OK),
    ("viewer", None, grpc.StatusCode.PERMISSION_DENIED),
    ("member", None, grpc.StatusCode.PERMISSION_DENIED),
    ("admin", None, grpc.StatusCode.OK),
    ("ingest-a", "proj-a", grpc.StatusCode.OK),
    ("ingest-a", "proj-b", grpc.StatusCode.PERMISSION_DENIED),
])
def test_grpc_by_role(auth_server: AuthServer, key: str | None, project: str | None,
                      expected: grpc.StatusCode) -> None:
    metadata = [(k, v) for k, v in auth_server.headers(key).items()]
    if project is not None:
        metadata.append(("x-project-name", project))
    body = protobuf_body(turn_spans(project or "proj-a", f"s-{uuid.uuid4().hex[:8]}"))
    with grpc.insecure_channel(auth_server.server.grpc_target) as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        try:
            call(body, metadata=metadata, timeout=30)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
            assert exc.details()
    assert code == expected


# --- REST API ----------------------------------------------------------------------------------------

READ_ROUTES = [
    "/v1/projects/proj-a/sessions",
    "/v1/projects/proj-a/sessions/s-proj-a",
    "/v1/projects/proj-a/users",
    "/v1/projects/proj-a/spans",
    "/v1/projects/proj-a/traces",
    "/v1/projects/proj-a/metrics",
    "/v1/projects/proj-a/annotations",
    "/v1/projects/proj-a/settings",
    "/v1/evaluators",
]


@pytest.mark.parametrize("path", READ_ROUTES)
@pytest.mark.parametrize(("key", "expected"), [
    (None, 401), ("tl_wrong", 401), ("ingest", 403), ("viewer", 200), ("member", 200), ("admin", 200),
    ("viewer-a", 200),
])
def test_rest_read_by_role(auth_server: AuthServer, path: str, key: str | None, expected: int) -> None:
    response = httpx.get(auth_server.url(path), headers=auth_server.headers(key), timeout=30)
    assert response.status_code == expected, response.text
    if expected >= 400:
        error = response.json()["error"]
        assert error["code"] == ("unauthenticated" if expected == 401 else "forbidden") and error["message"]


def test_project_limited_key_reads_only_its_project(auth_server: AuthServer) -> None:
    headers = auth_server.headers("viewer-a")
    listed = httpx.get(auth_server.url("/v1/projects"), headers=headers, timeout=30).json()["data"]
    assert [p["name"] for p in listed] == ["proj-a"]
    everything = httpx.get(auth_server.url("/v1/projects"), headers=auth_server.headers("viewer"), timeout=30)
    assert {"proj-a", "proj-b"} <= {p["name"] for p in everything.json()["data"]}
    for path in ("/v1/projects/proj-b/sessions", "/v1/projects/proj-b/sessions/s-proj-b",
                 "/v1/projects/proj-b/spans", "/projects/proj-b/sessions"):
        response = httpx.get(auth_server.url(path), headers=headers, timeout=30)
        assert response.status_code == 403, (path, response.text)


def annotation(session_id: str) -> dict[str, object]:
    return {"target_kind": "session", "target_id": session_id, "name": "access_check", "label": "ok",
            "annotator_kind": "HUMAN"}


@pytest.mark.parametrize(("key", "write", "admin"), [
    (None, 401, 401), ("ingest", 403, 403), ("viewer", 403, 403), ("member", 200, 403), ("admin", 200, 200),
    ("viewer-a", 403, 403), ("admin-a", 200, 200),
])
def test_rest_writes_by_role(auth_server: AuthServer, key: str | None, write: int, admin: int) -> None:
    headers = auth_server.headers(key)
    annotated = httpx.post(auth_server.url("/v1/projects/proj-a/annotations"), json=annotation("s-proj-a"),
                           headers=headers, timeout=30)
    assert annotated.status_code == write, annotated.text
    closed = httpx.post(auth_server.url("/v1/projects/proj-a/sessions/s-proj-a/close"), headers=headers, timeout=30)
    assert closed.status_code == write, closed.text
    settings = httpx.put(auth_server.url("/v1/projects/proj-a/settings"), json={"idle_timeout_seconds": 600},
                         headers=headers, timeout=30)
    assert settings.status_code == admin, settings.text
    config = httpx.put(auth_server.url("/v1/projects/proj-a/annotation-configs/access_check"),
                       json={"kind": "freeform"}, headers=headers, timeout=30)
    assert config.status_code == admin, config.text


@pytest.mark.parametrize("key", ["member", "admin-a", "viewer-a"])
def test_writes_to_another_project_are_refused(auth_server: AuthServer, key: str) -> None:
    headers = auth_server.headers(key)
    limited = key.endswith("-a")
    response = httpx.post(auth_server.url("/v1/projects/proj-b/annotations"), json=annotation("s-proj-b"),
                          headers=headers, timeout=30)
    assert response.status_code == (403 if limited else 200), response.text


@pytest.mark.parametrize(("key", "expected"), [
    (None, 401), ("ingest", 403), ("viewer", 403), ("member", 403), ("admin-a", 403), ("admin", 200),
])
def test_keys_api_is_for_admins_of_every_project(auth_server: AuthServer, key: str | None, expected: int) -> None:
    response = httpx.get(auth_server.url("/v1/keys"), headers=auth_server.headers(key), timeout=30)
    assert response.status_code == expected, response.text
    if expected == 200:
        listed = {k["name"]: k for k in response.json()["data"]}
        assert listed["viewer-a"]["projects"] == ["proj-a"] and listed["viewer"]["projects"] is None
        secret = auth_server.keys["viewer"]
        assert all(secret not in str(k) for k in listed.values()), "a listed key must not show its secret"
        assert listed["viewer"]["hint"] == secret[:7]


def test_healthz_needs_no_credentials(auth_server: AuthServer) -> None:
    assert httpx.get(auth_server.url("/healthz"), timeout=30).json() == {"status": "ok"}


# --- UI pages -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "expected"), [("ingest", 403), ("viewer", 200), ("member", 200), ("admin", 200)])
@pytest.mark.parametrize("path", ["/", "/projects/proj-a/sessions", "/projects/proj-a/sessions/s-proj-a",
                                  "/projects/proj-a/users", "/projects/proj-a/traces"])
def test_ui_pages_by_role(auth_server: AuthServer, path: str, key: str, expected: int) -> None:
    response = httpx.get(auth_server.url(path), headers=auth_server.headers(key), timeout=30)
    assert response.status_code == expected, response.text[:500]


@pytest.mark.parametrize("path", ["/", "/projects/proj-a/sessions", "/projects/proj-a/sessions/s-proj-a"])
def test_ui_pages_without_credentials_go_to_the_login(auth_server: AuthServer, path: str) -> None:
    response = httpx.get(auth_server.url(path), timeout=30)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


# --- keys: created and revoked over the API, shared by servers on one database --------------------------

def test_key_lifecycle_over_the_api(auth_server: AuthServer) -> None:
    admin = auth_server.headers("admin")
    name = f"k-{uuid.uuid4().hex[:8]}"
    created = httpx.post(auth_server.url("/v1/keys"), json={"name": name, "role": "viewer", "projects": ["proj-a"]},
                         headers=admin, timeout=30)
    assert created.status_code == 201, created.text
    secret = created.json()["key"]
    again = httpx.post(auth_server.url("/v1/keys"), json={"name": name, "role": "viewer"}, headers=admin, timeout=30)
    assert again.status_code == 409
    bad_role = httpx.post(auth_server.url("/v1/keys"), json={"name": name + "x", "role": "owner"}, headers=admin,
                          timeout=30)
    assert bad_role.status_code == 400 and "role" in bad_role.json()["error"]["message"]
    mine = {"authorization": f"Bearer {secret}"}
    assert httpx.get(auth_server.url("/v1/projects/proj-a/sessions"), headers=mine, timeout=30).status_code == 200
    assert httpx.delete(auth_server.url(f"/v1/keys/{name}"), headers=admin, timeout=30).status_code == 204
    assert httpx.get(auth_server.url("/v1/projects/proj-a/sessions"), headers=mine, timeout=30).status_code == 401
    missing = httpx.delete(auth_server.url(f"/v1/keys/{name}"), headers=admin, timeout=30)
    assert missing.status_code == 404 and name in missing.json()["error"]["message"]


def test_cli_revoke_stops_the_key_at_once(auth_server: AuthServer, tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    secret = create_key(auth_server.db_url, tmp_path, name, "ingest")
    headers = {"authorization": f"Bearer {secret}"}
    assert otlp_post(auth_server.server.otlp_http_url, headers).status_code == 200
    listed = threadline(auth_server.db_url, tmp_path, "keys", "list")
    assert name in listed.stdout and secret not in listed.stdout
    assert threadline(auth_server.db_url, tmp_path, "keys", "revoke", name).returncode == 0
    assert otlp_post(auth_server.server.otlp_http_url, headers).status_code == 401
    typo = threadline(auth_server.db_url, tmp_path, "keys", "revoke", name)
    assert typo.returncode != 0 and "no API key" in typo.stderr


def test_cli_refuses_bad_key_requests(auth_server: AuthServer, tmp_path: Path) -> None:
    bad_role = threadline(auth_server.db_url, tmp_path, "keys", "create", "--name", "x", "--role", "root")
    assert bad_role.returncode != 0 and "root" in bad_role.stderr
    taken = threadline(auth_server.db_url, tmp_path, "keys", "create", "--name", "viewer", "--role", "viewer")
    assert taken.returncode != 0 and "exists" in taken.stderr


def test_servers_sharing_postgres_share_keys(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as url:
        admin = create_key(url, tmp_path / "cli", "admin", "admin")
        first = new_server(url, tmp_path / "one", THREADLINE_AUTH="true").start()
        second = new_server(url, tmp_path / "two", THREADLINE_AUTH="true").start()
        try:
            created = httpx.post(f"{first.base_url}/v1/keys", json={"name": "shared", "role": "ingest"},
                                 headers={"authorization": f"Bearer {admin}"}, timeout=30)
            headers = {"authorization": f"Bearer {created.json()['key']}"}
            assert otlp_post(second.otlp_http_url, headers).status_code == 200
            revoked = httpx.delete(f"{second.base_url}/v1/keys/shared", headers={"authorization": f"Bearer {admin}"},
                                   timeout=30)
            assert revoked.status_code == 204
            assert otlp_post(first.otlp_http_url, headers).status_code == 401
            assert otlp_post(second.otlp_http_url, headers).status_code == 401
        finally:
            first.stop()
            second.stop()


# --- secure by default --------------------------------------------------------------------------------

def test_non_loopback_bind_without_auth_refuses_to_start(tmp_path: Path) -> None:
    env = {**os.environ, "THREADLINE_HOME": str(tmp_path), "THREADLINE_HOST": "0.0.0.0"}
    env.pop("THREADLINE_AUTH", None)
    env.pop("THREADLINE_INSECURE", None)
    done = subprocess.run([sys.executable, "-m", "threadline", "serve", "--port", "0", "--grpc-port", "0",
                           "--otlp-http-port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "THREADLINE_AUTH=true" in done.stderr and "THREADLINE_INSECURE=true" in done.stderr
    assert not (tmp_path / "threadline.db").exists(), "a refused start creates nothing"


def test_insecure_escape_hatch_warns(tmp_path: Path) -> None:
    server = new_server(f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "home", THREADLINE_HOST="0.0.0.0",
                        THREADLINE_INSECURE="true", THREADLINE_ALLOWED_HOSTS="127.0.0.1").start()
    try:
        assert httpx.get(f"{server.base_url}/v1/projects", timeout=30).status_code == 200
    finally:
        server.stop()
    assert "INSECURE" in server.log()


# --- our own clients send the key ---------------------------------------------------------------------

def test_annotations_client_sends_its_key(auth_server: AuthServer) -> None:
    from threadline.annotations_client import AnnotationsClient, ThreadlineApiError

    member = AnnotationsClient(auth_server.server.base_url, "proj-a", api_key=auth_server.keys["member"])
    stored = member.annotate("session", "s-proj-a", name="client_check", label="fine")
    assert stored["name"] == "client_check"
    viewer = AnnotationsClient(auth_server.server.base_url, "proj-a", api_key=auth_server.keys["viewer"])
    with pytest.raises(ThreadlineApiError) as refused:
        viewer.annotate("session", "s-proj-a", name="client_check", label="not allowed")
    assert refused.value.status == 403 and "viewer" in refused.value.message


def test_demo_needs_and_uses_a_key(auth_server: AuthServer, tmp_path: Path) -> None:
    endpoint = auth_server.server.otlp_http_url
    args = ["demo", "--sessions", "2", "--days", "0.1", "--project", "proj-a", "--endpoint", endpoint]
    env = {**os.environ, "THREADLINE_HOME": str(tmp_path)}
    env.pop("THREADLINE_API_KEY", None)
    without = subprocess.run([sys.executable, "-m", "threadline", *args], env=env, capture_output=True, text=True,
                             timeout=120)
    assert without.returncode != 0 and "--api-key" in without.stderr
    wrong_project = subprocess.run([sys.executable, "-m", "threadline", *args[:-3], "proj-b", "--endpoint", endpoint,
                                    "--api-key", auth_server.keys["ingest-a"]], env=env, capture_output=True,
                                   text=True, timeout=120)
    assert wrong_project.returncode != 0 and "403" in wrong_project.stderr
    sent = subprocess.run([sys.executable, "-m", "threadline", *args], env={**env, "THREADLINE_API_KEY":
                          auth_server.keys["ingest-a"]}, capture_output=True, text=True, timeout=300)
    assert sent.returncode == 0, sent.stderr
