"""Text that no database can store — NUL characters, lone UTF-16 surrogates — is a 400, never a 500.

PostgreSQL rejects NUL in text parameters and no driver can encode a lone surrogate, so such a
value in a path, a query string or a JSON body would otherwise fail deep in the store.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from threadline.server.web.api.errors import ApiError


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored, or ``None`` when it can."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate"
    return None


def check_json_text(value: Any, where: str = "value") -> None:
    """Raise ``ValueError`` if any string (or key) inside ``value`` cannot be stored."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise ValueError(f"{where} {problem}")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_json_text(key, f"{where} key")
            check_json_text(item, f"{where}.{key}" if isinstance(key, str) and not text_problem(key) else where)
    elif isinstance(value, list | tuple):
        for item in value:
            check_json_text(item, where)


def reject_unstorable_text(request: Request) -> None:
    """Router dependency: 400 when a path or query parameter cannot be stored."""
    for name, value in [*request.path_params.items(), *request.query_params.multi_items()]:
        problem = text_problem(str(value))
        if problem:
            raise ApiError(400, "invalid_request", f"{name} {problem}")
