"""Presenting spans: the trace tree with its waterfall, LLM messages, and a turn's LLM and tool calls.

Pure functions over :class:`threadline.server.model.Span` (as returned by ``get_trace``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from threadline import conventions as cv
from threadline.server.model import Span

MAX_DEPTH_CLASS = 12


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message of an LLM span."""

    role: str
    content: str | None
    tool_calls: list[tuple[str, str | None]] = field(default_factory=list)  # (function name, arguments)


@dataclass(frozen=True, slots=True)
class SpanRow:
    """A span placed in the tree: depth and its bar on the trace's time axis (0..1000)."""

    span: Span
    depth: int
    offset: float
    width: float

    @property
    def depth_class(self) -> str:
        """CSS class for the indentation (capped)."""
        return f"depth-{min(self.depth, MAX_DEPTH_CLASS)}"


def span_tree(spans: list[Span]) -> list[SpanRow]:
    """Spans in depth-first order (children by start time); orphans become roots."""
    if not spans:
        return []
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids and span.parent_span_id != span.span_id else None
        children.setdefault(parent, []).append(span)
    for members in children.values():
        members.sort(key=lambda s: (s.start_time, s.span_id))
    start = min(s.start_time for s in spans).timestamp()
    end = max(s.end_time for s in spans).timestamp()
    total = max(end - start, 1e-9)
    rows: list[SpanRow] = []
    seen: set[str] = set()
    stack: list[tuple[Span, int]] = [(s, 0) for s in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        offset = (span.start_time.timestamp() - start) / total * 1000
        width = max(2.0, (span.end_time.timestamp() - span.start_time.timestamp()) / total * 1000)
        rows.append(SpanRow(span=span, depth=depth, offset=round(offset, 2), width=round(min(width, 1000 - offset), 2)))
        stack.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))
    for span in spans:  # a parent cycle leaves spans unreached: show them anyway
        if span.span_id not in seen:
            seen.add(span.span_id)
            rows.append(SpanRow(span=span, depth=0, offset=0.0, width=1000.0))
    return rows


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def messages(attributes: dict[str, Any], prefix: str) -> list[Message]:
    """``prefix.N.message.*`` attributes (OpenInference, flattened) as ordered messages."""
    found: dict[int, dict[str, Any]] = {}
    start = prefix + "."
    for key, value in attributes.items():
        if not key.startswith(start):
            continue
        index_text, _, rest = key[len(start):].partition(".")
        if not index_text.isdigit() or len(index_text) > 12:
            continue
        entry = found.setdefault(int(index_text), {})
        if rest == cv.MESSAGE_ROLE:
            entry["role"] = value
        elif rest == cv.MESSAGE_CONTENT:
            entry["content"] = value
        elif rest.startswith(cv.MESSAGE_CONTENTS + ".") and rest.endswith(".message_content.text"):
            entry.setdefault("parts", []).append(_text(value))
        elif rest.startswith(cv.MESSAGE_TOOL_CALLS + "."):
            call_index, _, call_key = rest[len(cv.MESSAGE_TOOL_CALLS) + 1:].partition(".")
            calls = entry.setdefault("calls", {})
            if call_index.isdigit() and len(call_index) <= 6:
                calls.setdefault(int(call_index), {})[call_key] = value
    out = []
    for index in sorted(found):
        entry = found[index]
        content = entry.get("content")
        if content is None and entry.get("parts"):
            content = "\n".join(p for p in entry["parts"] if p)
        calls = [
            (_text(call.get(cv.TOOL_CALL_FUNCTION_NAME)) or "tool", _text(call.get(cv.TOOL_CALL_FUNCTION_ARGUMENTS)))
            for _, call in sorted(entry.get("calls", {}).items())
        ]
        out.append(Message(role=_text(entry.get("role")) or "message", content=_text(content), tool_calls=calls))
    return out


def exception_events(span: Span) -> list[dict[str, str]]:
    """The span's exception events as ``{type, message, stacktrace}``."""
    out = []
    for event in span.events:
        if event.name != "exception":
            continue
        a = event.attributes
        out.append({"type": str(a.get(cv.EXCEPTION_TYPE, "")), "message": str(a.get(cv.EXCEPTION_MESSAGE, "")),
                    "stacktrace": str(a.get(cv.EXCEPTION_STACKTRACE, ""))})
    return out
