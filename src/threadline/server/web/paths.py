"""Names and ids that round-trip through URL paths, ``/`` and ``%`` included (DESIGN §5).

ASGI servers hand the router a path whose ``%2F`` is already decoded into ``/``, so a project
named ``a/b`` (``/v1/projects/a%2Fb/sessions``) would never match ``{project}``. The
:class:`EncodedSlashes` middleware rebuilds the routing path from the raw path, decoding each
segment but keeping ``/`` and ``%`` inside a segment escaped; the ``str`` and ``path`` convertors
registered here undo that escape in the parameters the endpoints receive. Registered on import of
``threadline.server.web``, before any route is declared.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from starlette.convertors import PathConvertor, StringConvertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

_ESCAPED = re.compile("%2F|%25")


def routing_path(raw_path: bytes) -> str:
    """The path to route on: each segment decoded, with ``/`` and ``%`` inside it escaped again."""
    segments = raw_path.decode("latin-1").split("/")
    return "/".join(unquote(segment).replace("%", "%25").replace("/", "%2F") for segment in segments)


def _unescape(value: str) -> str:
    return _ESCAPED.sub(lambda match: "/" if match.group(0) == "%2F" else "%", value)


class SegmentConvertor(StringConvertor):
    """``{name}``: one path segment, with the escapes of :func:`routing_path` undone."""

    def convert(self, value: str) -> str:
        """The parameter as the client meant it."""
        return _unescape(value)

    def to_string(self, value: str) -> str:
        """The segment for ``url_path_for``."""
        return str(value).replace("%", "%25").replace("/", "%2F")


class RestConvertor(PathConvertor):
    """``{name:path}``: the rest of the path, with the escapes of :func:`routing_path` undone."""

    def convert(self, value: str) -> str:
        """The parameter as the client meant it."""
        return _unescape(value)


register_url_convertor("str", SegmentConvertor())
register_url_convertor("path", RestConvertor())


class EncodedSlashes:
    """ASGI middleware: route on :func:`routing_path` of the raw path (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: Any = scope.get("raw_path") if scope["type"] == "http" else None
        if raw:  # the raw path is the whole path, root path included, like ``path``
            scope = {**scope, "path": routing_path(bytes(raw))}
        await self.app(scope, receive, send)
