"""Run the server: the main HTTP port, the OTLP/HTTP port and the OTLP/gRPC port in one process."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import Iterator

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


def _config(app: FastAPI, settings: Settings, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=settings.host, port=port, log_level=settings.log_level.lower(), lifespan="off",
        access_log=settings.log_level.lower() == "debug", timeout_keep_alive=30, limit_concurrency=512,
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
                                            settings.max_decompressed_bytes)
        log.info(
            "Threadline on http://%s:%s (UI, API, OTLP/HTTP) · OTLP/HTTP :%s · OTLP/gRPC :%s · store %s",
            settings.host, settings.port or "-", settings.otlp_http_port or "-", settings.grpc_port or "-",
            runtime.store.dialect,
        )
        asyncio.run(_serve_all(servers))
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=5).wait(10)
        runtime.stop()
