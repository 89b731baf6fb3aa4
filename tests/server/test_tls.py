"""TLS on every port (DESIGN §9): ``THREADLINE_TLS_CERT`` + ``THREADLINE_TLS_KEY``.

A self-signed certificate for 127.0.0.1 is made with the ``openssl`` command line. The real
OpenTelemetry exporters send spans over https (both OTLP/HTTP ports) and over gRPC with TLS;
the REST API reads them back over https. Plain http (and plain gRPC) to a TLS port fails. A
half-configured or unusable certificate stops ``threadline serve`` with a message naming both
variables, never a traceback. TLS is transport only, so these tests run on SQLite.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from support.otlp import PROTOBUF, SpanMaker, TurnSpec, protobuf_body
from support.server import ServerProcess, free_ports, new_server

from .rest import q

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass(frozen=True)
class Pem:
    """A PEM certificate and its private key on disk."""

    cert: Path
    key: Path


def make_certificate(directory: Path, name: str = "server") -> Pem:
    """A self-signed certificate for ``localhost`` and ``127.0.0.1`` (``openssl req -x509``)."""
    directory.mkdir(parents=True, exist_ok=True)
    pem = Pem(directory / f"{name}.crt", directory / f"{name}.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(pem.key), "-out", str(pem.cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return pem


def trusting(cert: Path) -> ssl.SSLContext:
    """A client TLS context that trusts ``cert`` (and nothing else)."""
    return ssl.create_default_context(cafile=str(cert))


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Pem:
    """The test certificate."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


class TlsServer(ServerProcess):
    """A ``threadline serve`` with TLS on: reached over https, trusting the test certificate."""

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def otlp_http_url(self) -> str:
        return f"https://127.0.0.1:{self.otlp_http_port}/v1/traces"

    def start(self, timeout: float = 60.0) -> TlsServer:
        """Start, then wait until ``/healthz`` answers over https (the plain-http wait would never end)."""
        cert = Path(self.extra_env["THREADLINE_TLS_CERT"])
        env = {**os.environ, "THREADLINE_HOME": str(self.home), "THREADLINE_DECODE_WORKERS": "1", **self.extra_env}
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path = self.home / f"server-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "threadline", "serve", "--db", self.db_url, "--port", str(self.port),
                 "--grpc-port", str(self.grpc_port), "--otlp-http-port", str(self.otlp_http_port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"threadline serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", verify=trusting(cert), timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling for readiness, as support.server does
        self.stop()
        raise RuntimeError(f"threadline serve did not become healthy over https:\n{self.log()}")


@pytest.fixture
def tls_server(pem: Pem, tmp_path: Path) -> Iterator[TlsServer]:
    """A TLS server on a fresh SQLite database (stopped at the end of the test)."""
    plain = new_server(f"sqlite:///{tmp_path / 'tls.db'}", tmp_path / "home",
                       THREADLINE_TLS_CERT=str(pem.cert), THREADLINE_TLS_KEY=str(pem.key))
    server = TlsServer(db_url=plain.db_url, home=plain.home, port=plain.port, grpc_port=plain.grpc_port,
                       otlp_http_port=plain.otlp_http_port, extra_env=plain.extra_env)
    try:
        yield server.start()
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()[-5000:]


def turn(project: str, session_id: str) -> list[ReadableSpan]:
    """One turn's SDK spans in ``session_id`` of ``project``."""
    maker = SpanMaker(project)
    spans = maker.turn(TurnSpec(question=f"{session_id} question", answer=f"{session_id} answer",
                                session_id=session_id, user_id="u1", prompt_tokens=3, completion_tokens=4))
    maker.shutdown()
    return spans


def export_https(spans: list[ReadableSpan], endpoint: str, cert: Path) -> SpanExportResult:
    """The SDK's OTLP/HTTP exporter over https, trusting ``cert``."""
    exporter = HttpSpanExporter(endpoint=endpoint, certificate_file=str(cert), timeout=30)
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]


def export_grpc_tls(spans: list[ReadableSpan], target: str, cert: Path) -> SpanExportResult:
    """The SDK's OTLP/gRPC exporter with TLS (``insecure=False``), trusting ``cert``."""
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    exporter = GrpcSpanExporter(endpoint=target, insecure=False, credentials=credentials, timeout=30)
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def test_every_port_speaks_tls(tls_server: TlsServer, pem: Pem, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests prefers these variables to a session's own CA file (psf/requests#3829), so where they are
    # set the exporter's certificate_file would be ignored; an ordinary shell has neither.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    project = f"tls-{uuid.uuid4().hex[:8]}"
    sent = {
        "main": export_https(turn(project, "via-main"), f"{tls_server.base_url}/v1/traces", pem.cert),
        "otlp-http": export_https(turn(project, "via-otlp-http"), tls_server.otlp_http_url, pem.cert),
        "grpc": export_grpc_tls(turn(project, "via-grpc"), tls_server.grpc_target, pem.cert),
    }
    assert {name: result.name for name, result in sent.items()} == dict.fromkeys(sent, "SUCCESS")

    with httpx.Client(base_url=tls_server.base_url, verify=trusting(pem.cert), timeout=30) as api:
        response = api.get(f"/v1/projects/{q(project)}/sessions", params={"limit": 100})
        assert response.status_code == 200, response.text
        sessions = {s["session_id"]: s for s in response.json()["data"]}
        assert set(sessions) == {"via-main", "via-otlp-http", "via-grpc"}
        assert all(s["turns"] == 1 and s["tokens"]["total"] == 7 for s in sessions.values())
        detail = api.get(f"/v1/projects/{q(project)}/sessions/via-grpc").json()
        assert detail["turns"][0]["input"] == "via-grpc question"
        # Same-origin checks know the scheme: a page served over http is not our https origin.
        close = f"/v1/projects/{q(project)}/sessions/via-main/close"
        downgraded = api.post(close, headers={"Origin": f"http://127.0.0.1:{tls_server.port}"})
        assert downgraded.status_code == 403
        assert downgraded.json()["error"]["code"] == "cross_origin"
        assert api.post(close, headers={"Origin": tls_server.base_url}).status_code == 200

    assert f"Threadline on https://127.0.0.1:{tls_server.port}" in tls_server.log()
    assert "OTLP/gRPC (TLS)" in tls_server.log()


def test_plain_text_to_a_tls_port_fails(tls_server: TlsServer) -> None:
    for port in (tls_server.port, tls_server.otlp_http_port):
        with pytest.raises(httpx.TransportError):
            httpx.post(f"http://127.0.0.1:{port}/v1/traces", content=protobuf_body([]),
                       headers={"Content-Type": PROTOBUF}, timeout=30)
    with grpc.insecure_channel(tls_server.grpc_target) as channel:
        export = channel.unary_unary(EXPORT)
        with pytest.raises(grpc.RpcError) as failure:
            export(protobuf_body([]), timeout=30)
        assert failure.value.code() is grpc.StatusCode.UNAVAILABLE


def serve_once(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``threadline serve`` with extra ``env``; for configurations that must stop it at once."""
    port, grpc_port, otlp_port = free_ports(3)
    return subprocess.run(
        [sys.executable, "-m", "threadline", "serve", "--db", f"sqlite:///{tmp_path / 'never.db'}",
         "--port", str(port), "--grpc-port", str(grpc_port), "--otlp-http-port", str(otlp_port)],
        env={**os.environ, "THREADLINE_HOME": str(tmp_path / "home"), **env},
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("variable", ["THREADLINE_TLS_CERT", "THREADLINE_TLS_KEY"])
def test_half_configured_tls_refuses_to_start(tmp_path: Path, pem: Pem, variable: str) -> None:
    value = str(pem.cert if variable == "THREADLINE_TLS_CERT" else pem.key)
    done = serve_once(tmp_path, **{variable: value})
    assert done.returncode != 0
    assert "THREADLINE_TLS_CERT" in done.stderr and "THREADLINE_TLS_KEY" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_unusable_certificate_refuses_to_start(tmp_path: Path, pem: Pem) -> None:
    other = make_certificate(tmp_path / "other", "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = {
        "missing file": (tmp_path / "missing.crt", pem.key),
        "not PEM": (garbage, pem.key),
        "key of another certificate": (pem.cert, other.key),
    }
    for case, (cert, key) in cases.items():
        done = serve_once(tmp_path, THREADLINE_TLS_CERT=str(cert), THREADLINE_TLS_KEY=str(key))
        assert done.returncode != 0, case
        assert "cannot start" in done.stderr, (case, done.stderr)
        assert "THREADLINE_TLS_CERT" in done.stderr and "THREADLINE_TLS_KEY" in done.stderr, (case, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout, (case, done.stderr)
