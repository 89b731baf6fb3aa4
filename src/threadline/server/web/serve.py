"""Run the server: the main HTTP port, the OTLP/HTTP port and the OTLP/gRPC port in one process."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import ssl
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from threadline.server.settings import Settings
from threadline.server.web.app import Runtime, create_app, create_otlp_app
from threadline.server.web.grpc import start_grpc_server

log = logging.getLogger("threadline")


class InsecureBind(RuntimeError):
    """Auth is off but a port would be reachable from other machines."""


LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a port reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Refuse to serve without auth on a non-loopback address unless ``THREADLINE_INSECURE`` says so."""
    if settings.auth or is_loopback(settings.host):
        return
    if not settings.insecure:
        raise InsecureBind(
            f"refusing to bind {settings.host} with authentication off: anyone who can reach it could read, "
            "change and erase every project. Set THREADLINE_AUTH=true (and create a key with `threadline keys "
            "create`), bind 127.0.0.1, or set THREADLINE_INSECURE=true to accept the risk.")
    log.warning("INSECURE: serving on %s with authentication off (THREADLINE_INSECURE=true); anyone who can reach "
                "these ports can read, change and erase every project", settings.host)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`run` (several servers share it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class TlsConfigError(OSError):
    """``THREADLINE_TLS_CERT`` / ``THREADLINE_TLS_KEY`` cannot be read or do not make a usable pair."""


def _encrypted_key() -> bytes:
    """Asked for a passphrase by ``load_cert_chain``: the key is encrypted, which Threadline cannot serve."""
    raise TlsConfigError("THREADLINE_TLS_KEY is encrypted with a passphrase; Threadline needs an unencrypted PEM "
                         "key (make it readable only by the user running Threadline)")


def load_tls(settings: Settings) -> tuple[bytes, bytes] | None:
    """The PEM certificate chain and private key to serve TLS with (``None``: TLS off).

    Both files are read and checked once at start (readable, PEM, the key matching the
    certificate), so a mistake stops ``threadline serve`` with a message naming the variables
    instead of failing on the first connection.
    """
    if settings.tls_cert is None or settings.tls_key is None:  # the settings validator requires both or neither
        return None
    cert, key = Path(settings.tls_cert), Path(settings.tls_key)
    pair = f"THREADLINE_TLS_CERT={cert} / THREADLINE_TLS_KEY={key}"
    try:
        chain, private_key = cert.read_bytes(), key.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read {exc.filename or cert} ({exc.strerror or exc}); {pair}") from exc
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key, password=_encrypted_key)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"unusable TLS certificate or key ({exc.reason or exc}): {pair} must be a PEM "
                             "certificate (chain) and its matching unencrypted PEM private key") from exc
    return chain, private_key


def _config(app: FastAPI, settings: Settings, port: int) -> uvicorn.Config:
    # X-Forwarded-Proto/-For are trusted only from uvicorn's default FORWARDED_ALLOW_IPS (127.0.0.1 and
    # ::1): a reverse proxy on this machine can say "https"; nobody else can (docs/security.md#tls).
    tls = settings.tls_cert is not None and settings.tls_key is not None
    return uvicorn.Config(
        app, host=settings.host, port=port, log_level=settings.log_level.lower(), lifespan="off",
        access_log=settings.log_level.lower() == "debug", timeout_keep_alive=30, limit_concurrency=512,
        ssl_certfile=str(settings.tls_cert) if tls else None, ssl_keyfile=str(settings.tls_key) if tls else None,
    )


async def _serve_all(servers: list[_Server]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    await asyncio.gather(*(server.serve() for server in servers))


def run(settings: Settings) -> None:
    """Open the store, start ingest and serve every enabled port until SIGINT/SIGTERM."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    check_exposure(settings)
    tls = load_tls(settings)
    runtime = Runtime(settings)
    runtime.start()
    grpc_server = None
    try:
        servers: list[_Server] = []
        if settings.port:
            servers.append(_Server(_config(create_app(runtime), settings, settings.port)))
        if settings.otlp_http_port:
            servers.append(_Server(_config(create_otlp_app(runtime), settings, settings.otlp_http_port)))
        if settings.grpc_port:
            grpc_server = start_grpc_server(runtime.ingest, runtime.gate, settings.host, settings.grpc_port,
                                            settings.max_request_bytes, tls=tls)
        scheme = "https" if tls else "http"
        shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
        log.info(
            "Threadline on %s://%s:%s (UI, API, OTLP/HTTP) · OTLP/HTTP %s :%s · OTLP/gRPC%s :%s · store %s",
            scheme, shown_host, settings.port or "-", scheme, settings.otlp_http_port or "-",
            " (TLS)" if tls else "", settings.grpc_port or "-", runtime.store.dialect,
        )
        asyncio.run(_serve_all(servers))
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=5).wait(10)
        runtime.stop()
