"""Turn decoded spans into storable records: project, session, user, turn text, tokens, cost.

Pure functions (no I/O), run in the decode workers. The rules are DESIGN.md §3: a span may name
its session with ``session.id``, ``gen_ai.conversation.id`` or LangChain's ``metadata``
(``session_id`` / ``thread_id`` / ``conversation_id``); tokens and cost count on LLM spans only;
the text shown for a span is the last user message of its input and the assistant's reply, and
its detail the tool calls and results a turn's steps list (:mod:`threadline.server.chat`); its tags
and metadata pairs are read here once, for the filters (:mod:`threadline.server.store.labels`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, overload

import orjson

from threadline import conventions as cv
from threadline.server.chat import chat_fields
from threadline.server.ingest.otlp import DecodedSpan
from threadline.server.ingest.pricing import cost_usd
from threadline.server.store.labels import metadata_pairs, span_tags
from threadline.server.store.payload import encode_span
from threadline.server.store.records import SpanRecord

MAX_ID_CHARS = 1024
#: Session and user ids are indexed; a PostgreSQL btree entry must stay under ~2.7 kB.
MAX_ID_BYTES = 1024
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_PARSE_LIMIT = 1024 * 1024


def normalize(span: DecodedSpan, *, max_text_chars: int = 32 * 1024) -> SpanRecord:
    """Derive everything Threadline needs from one decoded span."""
    attrs = span.attributes
    kind = span_kind(attrs)
    metadata = _metadata(attrs.get(cv.METADATA))
    is_llm = kind == "LLM"
    prompt, completion, total = token_counts(attrs) if is_llm else (0, 0, 0)
    model = _text(attrs.get(cv.LLM_MODEL_NAME)) or _text(attrs.get(cv.GEN_AI_RESPONSE_MODEL)) or _text(
        attrs.get(cv.GEN_AI_REQUEST_MODEL))
    cost = span_cost(attrs, model, prompt, completion) if is_llm else 0.0
    error = None
    if span.status == "ERROR":
        error = span.status_message or _exception_message(span.events) or "error"
    chat = chat_fields(attrs, kind, span.name)
    if span.dropped_attributes:
        attrs = {**attrs, "threadline.dropped_attributes": span.dropped_attributes}
    text_in = _clean_text(_bound(chat.input, max_text_chars))
    text_out = _clean_text(_bound(chat.output, max_text_chars))
    events_json = orjson.dumps(span.events, default=str).decode() if span.events else "[]"
    # Positional: a named tuple built from keywords costs five times as much, on every span.
    return SpanRecord(
        _clean_text(span.project),  # project
        _clean_text(session_id(attrs, metadata)),  # session_id
        _clean_text(user_id(attrs, metadata)),  # user_id
        is_llm,
        _clean_text(error),  # error
        chat.turn_key,
        text_in,  # input
        text_out,  # output
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        _clean_text(span.name),  # name
        kind,
        span.start_ns,
        span.end_ns,
        span.status,
        _clean_text(span.status_message),  # status_message
        _clean_text(model[:256]) if model else None,  # model
        prompt,  # prompt_tokens
        completion,  # completion_tokens
        total,  # total_tokens
        cost,
        encode_span(text_in, text_out, chat.detail_json, events_json, attrs),  # payload
        span_tags(attrs[cv.TAG_TAGS]) if cv.TAG_TAGS in attrs else (),  # tags
        metadata_pairs(metadata) if metadata else (),  # metadata
    )


@overload
def _clean_text(text: str) -> str: ...


@overload
def _clean_text(text: str | None) -> str | None: ...


def _clean_text(text: str | None) -> str | None:
    """Text every backend can store: NUL characters and lone surrogates become U+FFFD.

    PostgreSQL text cannot hold NUL, and no database driver can encode a lone surrogate (which
    JSON-decoded values such as ``metadata`` or ``output.value`` may carry): either would fail
    the whole batch for good. Both backends store the same thing.
    """
    if not text:
        return text
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def span_kind(attrs: dict[str, Any]) -> str:
    """The OpenInference span kind, inferred from ``gen_ai.*`` attributes when absent."""
    kind = attrs.get(cv.SPAN_KIND)
    if isinstance(kind, str) and kind.strip():
        upper = kind.strip().upper()
        return upper if upper in cv.SPAN_KINDS else "UNKNOWN"
    operation = attrs.get(cv.GEN_AI_OPERATION_NAME)
    if operation in ("chat", "text_completion", "generate_content") or cv.GEN_AI_USAGE_INPUT_TOKENS in attrs:
        return "LLM"
    if operation == "execute_tool" or cv.GEN_AI_TOOL_NAME in attrs:
        return "TOOL"
    if operation == "embeddings":
        return "EMBEDDING"
    return "UNKNOWN"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value.strip():
        text = value[:MAX_ID_CHARS]
        if not text.isascii():
            encoded = text.encode("utf-8", "surrogatepass")
            if len(encoded) > MAX_ID_BYTES:
                text = encoded[:MAX_ID_BYTES].decode("utf-8", "ignore")
        return text
    return None


def _metadata(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{") and len(value) <= _JSON_PARSE_LIMIT:
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def session_id(attrs: dict[str, Any], metadata: dict[str, Any]) -> str | None:
    """The conversation this span names, if any."""
    for value in (attrs.get(cv.SESSION_ID), attrs.get(cv.GEN_AI_CONVERSATION_ID)):
        found = _id(value)
        if found:
            return found
    for key in cv.METADATA_SESSION_KEYS:
        found = _id(metadata.get(key))
        if found:
            return found
    return None


def user_id(attrs: dict[str, Any], metadata: dict[str, Any]) -> str | None:
    """The user this span names, if any."""
    found = _id(attrs.get(cv.USER_ID))
    if found:
        return found
    for key in cv.METADATA_USER_KEYS:
        found = _id(metadata.get(key))
        if found:
            return found
    return None


#: Largest token count taken from one span, and largest cost in USD: bigger values are hostile
#: or broken, and would overflow the 64-bit rollups (or turn them into infinity).
MAX_TOKENS = 10**12
MAX_COST_USD = 1e9


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return 0
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0
        value = int(value)
    if isinstance(value, int):
        return min(MAX_TOKENS, max(0, value))
    return 0


def _cost(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_COST_USD:
        return float(value)
    return None


def token_counts(attrs: dict[str, Any]) -> tuple[int, int, int]:
    """(prompt, completion, total) tokens of an LLM span."""
    prompt = _int(attrs.get(cv.LLM_TOKEN_PROMPT)) or _int(attrs.get(cv.GEN_AI_USAGE_INPUT_TOKENS)) or _int(
        attrs.get(cv.GEN_AI_USAGE_PROMPT_TOKENS))
    completion = _int(attrs.get(cv.LLM_TOKEN_COMPLETION)) or _int(attrs.get(cv.GEN_AI_USAGE_OUTPUT_TOKENS)) or _int(
        attrs.get(cv.GEN_AI_USAGE_COMPLETION_TOKENS))
    total = _int(attrs.get(cv.LLM_TOKEN_TOTAL)) or prompt + completion
    return prompt, completion, total


def span_cost(attrs: dict[str, Any], model: str | None, prompt: int, completion: int) -> float:
    """The span's own ``llm.cost.*`` if present, else the price-table estimate."""
    total = _cost(attrs.get(cv.LLM_COST_TOTAL))
    if total is not None:
        return total
    numbers = [n for n in (_cost(attrs.get(cv.LLM_COST_PROMPT)), _cost(attrs.get(cv.LLM_COST_COMPLETION)))
               if n is not None]
    if numbers:
        return sum(numbers)
    return cost_usd(model, prompt, completion)


def _exception_message(events: list[dict[str, Any]]) -> str | None:
    for event in events:
        if event.get("name") == "exception":
            ev = event.get("attributes") or {}
            kind, message = ev.get(cv.EXCEPTION_TYPE), ev.get(cv.EXCEPTION_MESSAGE)
            return ": ".join(str(x) for x in (kind, message) if x) or None
    return None


def _bound(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    return text if len(text) <= limit else text[:limit] + "…"


