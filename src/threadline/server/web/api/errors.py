"""The API's error shape ``{"error": {"code", "message"}}`` and the handlers that produce it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from threadline.server.query.errors import InvalidQuery

log = logging.getLogger("threadline.api")


class ApiError(Exception):
    """Raise from an endpoint to answer ``status`` with an error ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """A JSON error response in the API's shape."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app fully matches on ``request``'s path (``Allow`` of a 405).

    Asked of the router one method at a time, so routes inside included routers count too.
    """
    routes = request.app.router.routes
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)]


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, answer in the API's error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(InvalidQuery)
    async def _invalid_query(_request: Request, exc: InvalidQuery) -> JSONResponse:
        return error_response(400, "invalid_query", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "invalid_request", _describe(exc))

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        response = error_response(exc.status_code, code, message)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # every method some route takes on this path, not only the first route's
            response.headers["Allow"] = ", ".join(allowed_methods(_request))
        return response

    @app.exception_handler(OperationalError)
    async def _store_unavailable(_request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig or exc)
        response = error_response(503, "store_unavailable", "the database is unavailable; retry later")
        response.headers["Retry-After"] = str(_request.app.state.settings.retry_after_seconds)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "unexpected server error; see the server log")


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine-readable ``code`` and a message for people."""

    code: str = Field(description="e.g. invalid_request, invalid_query, not_found, session_not_found")
    message: str


class ErrorBody(BaseModel):
    """Every API error: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


_ERROR_TEXT = {
    400: "Invalid request (`invalid_request`: a parameter or body the schema refuses, text with NUL or a lone "
         "surrogate; `invalid_query`: a cursor, search or time range that cannot be answered; or a route's own code)",
    401: "No valid credentials (auth on): send `Authorization: Bearer <key>`",
    403: "The credentials may not do this here (role, project, or a missing CSRF token)",
    404: "No such project, session, user, trace, annotation, key, run or config (or no such path)",
    409: "Conflicts with the server's state",
    503: "The database is unavailable; retry after `Retry-After` seconds",
}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` declaring ``statuses`` with the error body (and their headers)."""
    return {status: {"model": ErrorBody, "description": _ERROR_TEXT[status],
                     **({"headers": _ERROR_HEADERS[status]} if status in _ERROR_HEADERS else {})}
            for status in statuses}


#: The errors any API route can give: a refused parameter, auth, and a database that is down.
API_ERRORS = error_responses(400, 401, 403, 503)
#: …plus 404, for routes whose path names a project, session, user, trace, key, run or config.
API_ERRORS_NAMED = error_responses(400, 401, 403, 404, 503)
