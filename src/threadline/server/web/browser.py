"""Browser safety on the HTTP ports, with auth on or off (DESIGN §9, docs/security.md).

:class:`BrowserSafety` is an ASGI middleware in front of both HTTP apps (the main port and the
OTLP/HTTP port). It refuses, before any route runs:

* **a foreign ``Host``** (DNS rebinding): a web page on ``evil.test`` whose name an attacker
  re-points at 127.0.0.1 reaches a localhost Threadline with ``Host: evil.test``. Any host not
  in ``THREADLINE_ALLOWED_HOSTS`` gets 400 ``host_not_allowed``. ``GET /healthz`` is exempt: it
  tells nothing but "up", and load balancers and orchestrators probe it by IP address.
* **a cross-site state-changing request**: a request other than GET/HEAD/OPTIONS whose
  ``Origin`` (or, without one, ``Referer``) is not this server's own origin gets 403
  ``cross_origin``. Requests with neither header (curl, SDKs, OTLP exporters) pass.
* **a form or text body sent to a JSON endpoint**: ``application/x-www-form-urlencoded``,
  ``multipart/form-data`` and ``text/plain`` are what a foreign page can send without a CORS
  preflight; every state-changing ``/v1/...`` REST route takes JSON, so such a body there gets
  403 ``form_body`` whatever its origin. ``/v1/traces`` has its own media-type rules (415) and
  the UI's form-encoded ``POST /login`` is not under ``/v1/``.

Refusals answer in the API's error shape ``{"error": {"code", "message"}}``, except on
``/v1/traces``, where OTLP exporters expect a ``google.rpc.Status`` (protobuf, or JSON when the
request was JSON), like every other OTLP error of :mod:`threadline.server.web.otlp`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from threadline.server.ingest import outcomes
from threadline.server.ingest.otlp import JSON, PROTOBUF

#: Methods that never change anything (no origin check).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Bodies a web page on any site can send without a CORS preflight.
FORM_MEDIA_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
#: The OTLP/HTTP route: its refusals answer with a ``google.rpc.Status``.
OTLP_PATH = "/v1/traces"
#: Exempt from the Host check: says only "up", and is probed by IP address.
HEALTH_PATH = "/healthz"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def split_host(value: str) -> tuple[str, int | None]:
    """The lower-case name (IPv6 brackets and a trailing dot removed) and the port of a ``Host`` value.

    ``split_host("[::1]:6006") == ("::1", 6006)``; a port that is not a number is kept as part
    of the name, so such a host matches nothing.
    """
    value = value.strip().lower()
    port: int | None = None
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return value, None
        name, rest = value[1:end], value[end + 1:]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        elif rest:
            return value, None
        return name, port
    if value.count(":") == 1:
        name, _, digits = value.partition(":")
        if not digits.isdigit():
            return value, None
        value, port = name, int(digits)
    return value.rstrip("."), port


def host_allowed(name: str, allowed: frozenset[str] | None) -> bool:
    """Whether host ``name`` (as from :func:`split_host`) is in ``allowed`` (``None``: any host).

    An entry ``*.example.com`` allows every subdomain of ``example.com`` (not the name itself).
    """
    if allowed is None:
        return True
    if not name:
        return False
    if name in allowed:
        return True
    return any(entry.startswith("*.") and name.endswith(entry[1:]) for entry in allowed)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def same_origin(source: str, scheme: str, host: str) -> bool:
    """Whether ``source`` (an ``Origin``, or a ``Referer`` URL) is the server's own origin.

    Our origin is the scheme the request reached us by and its ``Host`` header: the same host
    name and the same port (a missing port is the default of ``source``'s scheme) are the same
    origin. A page on ``https://`` may post to us over plain ``http`` (TLS ended by a reverse
    proxy whose ``X-Forwarded-Proto`` is not trusted), but when we serve https a page on
    ``http://`` is foreign. ``Origin: null`` (sandboxed frames, ``file:``) is never ours.
    """
    try:
        parts = urlsplit(source.strip())
        source_port = parts.port
    except ValueError:
        return False
    source_scheme = parts.scheme.lower()
    if source_scheme not in _DEFAULT_PORTS or not parts.hostname:
        return False
    if scheme == "https" and source_scheme != "https":
        return False
    host_name, host_port = split_host(host)
    default = _DEFAULT_PORTS[source_scheme]
    source_name = parts.hostname.lower().rstrip(".")
    if _is_ip(source_name) and _is_ip(host_name):
        same_name = ipaddress.ip_address(source_name) == ipaddress.ip_address(host_name)
    else:
        same_name = source_name == host_name
    return same_name and (source_port or default) == (host_port or default)


def served_over_https(request: Request) -> bool:
    """Whether ``request`` reached us over https (set the login cookie ``Secure`` then).

    True when Threadline serves TLS itself (``THREADLINE_TLS_CERT``), or behind a reverse proxy
    whose ``X-Forwarded-Proto: https`` uvicorn trusts (proxies on 127.0.0.1/::1 by default; see
    docs/security.md).
    """
    return request.url.scheme == "https"


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class BrowserSafety:
    """ASGI middleware: the Host allow-list, cross-site refusal and form bodies on JSON routes."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str] | None) -> None:
        """Wrap ``app``; ``allowed_hosts`` as :attr:`Settings.allowed_host_names` (``None``: any host)."""
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a refused request here; hand any other to the app."""
        if scope["type"] != "http":  # lifespan; no route of ours is a websocket
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, code, message = refusal
        path: str = scope.get("path", "")
        headers = scope.get("headers", ())
        if path == OTLP_PATH:
            media = JSON if _media(_header(headers, b"content-type")) == JSON else PROTOBUF
            grpc_code = (outcomes.BAD_DATA if status == 400 else outcomes.FORBIDDEN).grpc_code
            status_message = Status(code=grpc_code, message=message)
            body = (json.dumps(json_format.MessageToDict(status_message)).encode() if media == JSON
                    else status_message.SerializeToString())
        else:
            media = "application/json"
            body = json.dumps({"error": {"code": code, "message": message}}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """``(status, code, message)`` when the request must be refused, else ``None``."""
        headers = scope.get("headers", ())
        path: str = scope.get("path", "")
        host = _header(headers, b"host")
        if path != HEALTH_PATH:
            name = split_host(host)[0] if host is not None else ""
            if not host_allowed(name, self.allowed_hosts):
                shown = repr(host) if host is not None else "(none)"
                return (400, "host_not_allowed",
                        f"host {shown} is not allowed; add it to THREADLINE_ALLOWED_HOSTS (comma-separated) "
                        "if this server is meant to answer to that name")
        if scope.get("method", "GET").upper() in SAFE_METHODS:
            return None
        source = _header(headers, b"origin")
        header_name = "Origin"
        if source is None:
            source, header_name = _header(headers, b"referer"), "Referer"
        if source is not None and not same_origin(source, scope.get("scheme", "http"), host or ""):
            return (403, "cross_origin",
                    f"cross-site request refused: {header_name} {source!r} is not this server's origin; "
                    "a page of another site cannot change anything here")
        if path.startswith("/v1/") and path != OTLP_PATH:
            media = _media(_header(headers, b"content-type"))
            if media in FORM_MEDIA_TYPES:
                return (403, "form_body",
                        f"this endpoint takes JSON (Content-Type: application/json), not {media}: form and "
                        "text bodies are refused because any web page can send them")
        return None
