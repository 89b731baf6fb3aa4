"""Rendering for the web UI: the Jinja environment, display filters and the security headers.

Every HTML response goes through :func:`html_response`, which sets a strict
Content-Security-Policy (no inline script or style, nothing from another origin). Autoescape is
on for every template, so span data is always rendered as text, except through the ``markdown``
and ``markdown_or_json`` filters (:mod:`.markdown`), whose safe HTML escapes every piece of text.
"""

from __future__ import annotations

import hashlib
import math
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from threadline.server.auth.roles import Action, Principal
from threadline.server.web.ui.markdown import dump_json, markdown, markdown_or_json, parse_json_container

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Never a referrer for another site; same-origin, so a form POST (login, logout) carries our
    # real Origin (with no-referrer browsers send ``Origin: null``, which the browser-safety check refuses).
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

current_principal: ContextVar[Principal | None] = ContextVar("threadline_ui_principal", default=None)
"""Who the page being rendered is for; set per request by the UI routes (``views.remember_principal``).

Unset (``None``: a template rendered outside a request) renders as for the local operator, with
every control, which is also what every request gets with auth off.
"""


# --- display filters ------------------------------------------------------------------------------

def url_part(value: Any) -> str:
    """Percent-encode one URL path segment or query value (``/``, spaces and unicode included)."""
    return quote(str(value), safe="")


def duration(milliseconds: float | None) -> str:
    """``850 ms``, ``1.24 s``, ``3m 20s``, ``2h 05m``, ``3d 4h``."""
    if milliseconds is None:
        return "–"
    if milliseconds < 1:
        return f"{milliseconds:.2f} ms"
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms"
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def number(value: float | int | None) -> str:
    """``12,345`` (``–`` for ``None``)."""
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def compact(value: float | int | None) -> str:
    """``950``, ``12.3k``, ``4.1M``."""
    if value is None:
        return "–"
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.1f}{suffix}" if scaled < 100 else f"{scaled:.0f}{suffix}"
    return f"{value:.0f}" if isinstance(value, int) or float(value).is_integer() else f"{value:.1f}"


def usd(value: float | None) -> str:
    """``$0``, ``<$0.0001``, ``$0.0123``, ``$12.34``."""
    if value is None:
        return "–"
    if value == 0:
        return "$0"
    if value < 0.0001:
        return "<$0.0001"
    if value < 1:
        return f"${value:.4f}"
    return f"${value:,.2f}"


def percent(value: float | None) -> str:
    """``4.2%`` (``–`` for ``None``)."""
    if value is None:
        return "–"
    return f"{value * 100:.1f}%" if value < 0.1 else f"{value * 100:.0f}%"


def timestamp(moment: datetime | None) -> str:
    """``2026-11-21 10:00:05`` in UTC."""
    if moment is None:
        return "–"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def short_time(moment: datetime | None) -> str:
    """``Nov 21 10:00`` in UTC (tables; the full time is in the title)."""
    if moment is None:
        return "–"
    return moment.astimezone(UTC).strftime("%b %d %H:%M")


def clock(moment: datetime | None) -> str:
    """``10:00:05.123`` in UTC."""
    if moment is None:
        return "–"
    value = moment.astimezone(UTC)
    return value.strftime("%H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def iso(moment: datetime | None) -> str:
    """RFC 3339 UTC with milliseconds (for ``<time datetime>``)."""
    if moment is None:
        return ""
    value = moment.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``just now``, ``5 min ago``, ``3 h ago``, ``12 d ago``."""
    if moment is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400 * 2:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def shorten(text: str | None, limit: int = 160) -> str:
    """The text on one line, cut to ``limit`` characters."""
    if not text:
        return ""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def pretty(value: Any) -> str:
    """Pretty JSON for dicts and lists; a string that holds a JSON object or array is parsed and
    pretty-printed (any other string is returned as it is)."""
    if isinstance(value, str):
        parsed = parse_json_container(value)
        if parsed is None:
            return value
        value = parsed
    return dump_json(value)


def score(value: float | None) -> str:
    """An annotation score with up to 2 decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def annotation_text(summary: Any) -> str:
    """An annotation summary in a table cell: the mean score, else the most frequent label."""
    if summary is None:
        return ""
    if summary.mean_score is not None:
        return score(summary.mean_score)
    if summary.labels:
        return str(max(summary.labels.items(), key=lambda item: item[1])[0])
    return str(summary.count)


# --- environment ----------------------------------------------------------------------------------

@cache
def static_version() -> str:
    """A hash of the static files, appended to their URLs so browsers may cache them forever."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def static_url(name: str) -> str:
    """The versioned URL of a static file."""
    return f"/static/{url_part(name)}?v={static_version()}"


@cache
def environment() -> Environment:
    """The Jinja environment (autoescape on for everything, undefined names are errors)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(
        u=url_part, duration=duration, number=number, compact=compact, usd=usd, percent=percent,
        timestamp=timestamp, short_time=short_time, clock=clock, iso=iso, ago=ago, shorten=shorten, pretty=pretty,
        score=score, annotation=annotation_text, markdown=markdown, markdown_or_json=markdown_or_json,
    )
    env.globals.update(static_url=static_url)
    return env


def access_context(principal: Principal | None) -> dict[str, Any]:
    """What templates know of who is looking: ``principal`` (``None``: as the local operator),
    ``can_write`` (annotate, close sessions, run evals), ``can_admin`` (settings, annotation
    configs) and ``csrf_token`` (a login's, for the ``csrf-token`` meta and the logout form)."""
    return {
        "principal": principal,
        "can_write": principal is None or principal.may(Action.WRITE),
        "can_admin": principal is None or principal.may(Action.ADMIN),
        "csrf_token": principal.csrf_token if principal is not None else None,
    }


def render(template: str, **context: Any) -> str:
    """Render ``template`` with ``context`` (and, unless given, :func:`access_context` of the request)."""
    return environment().get_template(template).render(**{**access_context(current_principal.get()), **context})


def html_response(template: str, status_code: int = 200, headers: dict[str, str] | None = None,
                  **context: Any) -> HTMLResponse:
    """An HTML response with the security headers."""
    return HTMLResponse(render(template, **context), status_code=status_code,
                        headers={**SECURITY_HEADERS, **(headers or {})})
