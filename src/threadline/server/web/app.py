"""The one composition root: builds the runtime (store + ingest) and the route table.

``create_app`` is the main HTTP app (UI, REST API, OTLP/HTTP, health); ``create_otlp_app`` is
the OTLP/HTTP-only app of the standard port 4318. Both share one :class:`Runtime`.
"""

from __future__ import annotations

import logging
import time

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from threadline.server.auth.gate import Gate
from threadline.server.auth.passwords import hash_password
from threadline.server.auth.roles import Role
from threadline.server.evals.lifecycle import Lifecycle
from threadline.server.ingest.service import IngestService
from threadline.server.settings import Settings
from threadline.server.store import people
from threadline.server.store.engine import Store, open_store
from threadline.server.web import otlp
from threadline.server.web.access import AccessDenied
from threadline.server.web.api import annotation_configs as annotation_configs_api
from threadline.server.web.api import annotations as annotations_api
from threadline.server.web.api import erase as erase_api
from threadline.server.web.api import evals, keys, lifecycle, metrics, projects, sessions, traces, users
from threadline.server.web.api.errors import API_ERRORS, API_ERRORS_NAMED, install_error_handlers
from threadline.server.web.api.guards import reject_unstorable_text
from threadline.server.web.api.schemas import Health
from threadline.server.web.browser import BrowserSafety
from threadline.server.web.openapi_snapshot import install_openapi
from threadline.server.web.paths import EncodedSlashes
from threadline.server.web.ui import login
from threadline.server.web.ui.views import router as ui_router

log = logging.getLogger("threadline")


class Runtime:
    """What a running server owns: settings, the store, the access gate and the ingest service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store = open_store(settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous,
                                       checkpointed_elsewhere=True)  # by the ingest writer process
        self.gate = Gate(self.store, enabled=settings.auth)
        self.ingest = IngestService(settings)
        # Threads for blocking ingest work, apart from the pool of the UI and API (made in the event
        # loop on first use: web/otlp.py ingest_limiter).
        self.ingest_limiter: anyio.CapacityLimiter | None = None
        self.lifecycle = Lifecycle(settings, self.store)

    def start(self) -> None:
        """Create the first admin (if asked to), start the writer, the decode workers and background loops."""
        first_admin(self.settings, self.store)
        self.ingest.start()
        self.lifecycle.start()

    def stop(self) -> None:
        """Flush and stop everything, then close the store."""
        self.lifecycle.stop()
        self.ingest.stop()
        self.store.dispose()


def first_admin(settings: Settings, store: Store) -> None:
    """With ``THREADLINE_ADMIN_PASSWORD`` set and no users yet, create the user ``admin`` (role admin)."""
    if settings.admin_password is None:
        return
    with store.read() as conn:
        if people.count_people(conn):
            return
    password_hash = hash_password(settings.admin_password.get_secret_value())
    try:
        with store.write() as tx:
            people.create_person(tx, "admin", Role.ADMIN.value, password_hash, time.time_ns())
    except people.PersonExists:
        return  # another server sharing the database made it first
    log.info("created the user 'admin' (role admin) from THREADLINE_ADMIN_PASSWORD")


def _attach(app: FastAPI, runtime: Runtime) -> None:
    app.state.runtime = runtime
    app.state.settings = runtime.settings
    app.state.store = runtime.store
    app.state.ingest = runtime.ingest
    app.state.gate = runtime.gate
    install_error_handlers(app)
    app.add_middleware(EncodedSlashes)  # names with '/' or '%' route as one path segment (web/paths.py)
    # Host allow-list (DNS rebinding) and cross-site refusal, with auth on or off (web/browser.py).
    app.add_middleware(BrowserSafety, allowed_hosts=runtime.settings.allowed_host_names)


def create_app(runtime: Runtime) -> FastAPI:
    """The main app: health, REST API v1, OTLP/HTTP and the web UI."""
    app = FastAPI(
        title="Threadline",
        version="0.1.0",
        # Swagger UI and ReDoc load scripts from a CDN: no page of ours requests another origin.
        docs_url=None,
        redoc_url=None,
        description="Sessions, users and traces of LLM applications. Lists are "
        "`{data, next_cursor}`; errors are `{error: {code, message}}`; times are RFC 3339 UTC.",
        # Text no database can store (NUL, lone surrogates) in any path or query is a 400.
        dependencies=[Depends(reject_unstorable_text)],
    )
    _attach(app, runtime)
    install_openapi(app)

    @app.get("/healthz", tags=["health"], summary="Liveness and store readiness", response_model=Health,
             responses={k: v for k, v in API_ERRORS.items() if k in (400, 503)})
    def healthz() -> JSONResponse:
        runtime.store.ping()
        return JSONResponse({"status": "ok"})

    app.include_router(otlp.router)
    # Every API route declares the errors it can give (web/api/errors.py); routes whose path names a
    # project (every router below but projects, keys and evals) may also answer 404.
    app.include_router(projects.router, responses=API_ERRORS)
    app.include_router(keys.router, responses=API_ERRORS)  # its DELETE declares its own 404
    app.include_router(annotations_api.router, responses=API_ERRORS_NAMED)  # before sessions: …/breakdown
    app.include_router(annotation_configs_api.router, responses=API_ERRORS_NAMED)
    app.include_router(lifecycle.router, responses=API_ERRORS_NAMED)
    app.include_router(evals.router, responses=API_ERRORS)  # its project routes declare their own 404
    app.include_router(metrics.router, responses=API_ERRORS_NAMED)
    # DELETE …/sessions|users/{id:path}: before their GET routers
    app.include_router(erase_api.router, responses=API_ERRORS_NAMED)
    app.include_router(sessions.router, responses=API_ERRORS_NAMED)
    app.include_router(users.router, responses=API_ERRORS_NAMED)
    app.include_router(traces.router, responses=API_ERRORS_NAMED)
    app.include_router(login.router)
    app.include_router(ui_router)

    @app.exception_handler(AccessDenied)
    async def _access_denied(request: Request, exc: AccessDenied) -> Response:
        return login.ui_access_denied(request, exc)

    return app


def create_otlp_app(runtime: Runtime) -> FastAPI:
    """The OTLP/HTTP-only app for port 4318."""
    app = FastAPI(title="Threadline OTLP/HTTP", openapi_url=None, docs_url=None, redoc_url=None)
    _attach(app, runtime)
    app.include_router(otlp.router)
    return app
