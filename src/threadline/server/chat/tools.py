"""Tool calls and tool results: a requested call (:data:`_Call`) and a given result
(:data:`_Result`) from wire values, those of flattened messages, LangChain's serialized ToolMessage,
a reply that only calls tools in words ("called lookup_order(order_id=1234)"), and the bounded
text of a span's detail JSON (:data:`MAX_DETAIL_CHARS`, :data:`MAX_DETAIL_ENTRIES`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from threadline import conventions as cv
from threadline.server.chat.messages import _MESSAGE_KEYS, _MESSAGE_TOOL_CALL_ID, _content_text, _role

#: Longest string in a span's detail JSON (longer ones are cut, ending in "…").
MAX_DETAIL_CHARS = 4096
#: Most entries in one list of a span's detail JSON (tool calls, tool results).
MAX_DETAIL_ENTRIES = 32
# OpenInference keys that threadline.conventions does not name (yet).
_MESSAGE_NAME = "message.name"
_MESSAGE_FUNCTION_CALL_NAME = "message.function_call_name"
_MESSAGE_FUNCTION_CALL_ARGUMENTS = "message.function_call_arguments_json"

_SURROGATE = re.compile("[\ud800-\udfff]")
#: A requested tool call: (id, name, arguments as sent: a JSON string, an object, or None).
_Call = tuple[str | None, str, Any]
#: A tool result given to an LLM: (tool call id, tool name, content).
_Result = tuple[str | None, str | None, str | None]


def _call(call_id: Any, name: Any, arguments: Any) -> _Call | None:
    """A tool call from wire values of any type; ``None`` when it names nothing at all."""
    text = _name(name)
    if text is None:
        if call_id is None and arguments is None:
            return None
        text = "unknown"
    return _id(call_id), text, arguments


def _flattened_calls(attrs: dict[str, Any], bases: list[str]) -> list[_Call]:
    """``message.tool_calls.J.tool_call.*`` (or a legacy ``message.function_call_name``) of the
    messages with key prefixes ``bases``, looked up by index, at most :data:`MAX_DETAIL_ENTRIES`."""
    get = attrs.get
    calls: list[_Call] = []
    for base in bases:
        count = 0
        keys = _CALL_KEYS.get(base)  # built once for the first messages (most of which call nothing)
        if keys is None:
            keys = _call_keys(base)
        if get(keys[0]) is not None or get(keys[1]) is not None or get(keys[2]) is not None:
            prefix = f"{base}{cv.MESSAGE_TOOL_CALLS}."
            while len(calls) < MAX_DETAIL_ENTRIES:
                key = f"{prefix}{count}.tool_call."
                call = _call(get(key + "id"), get(key + "function.name"), get(key + "function.arguments"))
                if call is None:
                    break
                calls.append(call)
                count += 1
        if count == 0 and (name := _name(get(keys[3]))) is not None:
            calls.append((None, name, get(keys[4])))
        if len(calls) >= MAX_DETAIL_ENTRIES:
            break
    return calls


def _call_keys(base: str) -> tuple[str, ...]:
    """The :data:`_CALL_KEYS` entry of a message with key prefix ``base``."""
    return (*(f"{base}{cv.MESSAGE_TOOL_CALLS}.0.tool_call.{key}" for key in ("id", "function.name",
                                                                              "function.arguments")),
            base + _MESSAGE_FUNCTION_CALL_NAME, base + _MESSAGE_FUNCTION_CALL_ARGUMENTS)


#: :func:`_call_keys` of the messages of :data:`_MESSAGE_KEYS`, by key prefix: their first tool
#: call's id, function name and arguments, then their legacy function call's name and arguments.
_CALL_KEYS = {base: _call_keys(base) for keys in _MESSAGE_KEYS.values() for _, _, base, _, _ in keys}


def _flattened_results(attrs: dict[str, Any], raw: list[tuple[Any, Any]], bases: list[str]) -> list[_Result]:
    """The flattened tool messages after the last user message; a result without a name takes
    that of the call it answers (OpenAI tool messages carry only ``tool_call_id``)."""
    start = len(raw)
    while start > 0 and _role(raw[start - 1][0]) != "user":
        start -= 1
    roles = [_role(role) for role, _ in raw[start:]]
    if "tool" not in roles and "function" not in roles:
        return []
    get = attrs.get
    results: list[_Result] = []
    for index in range(start, len(raw)):
        if roles[index - start] not in ("tool", "function"):
            continue
        base = bases[index]
        results.append((_id(get(base + _MESSAGE_TOOL_CALL_ID)), _name(get(base + _MESSAGE_NAME)),
                        _content_text(raw[index][1])))
        if len(results) >= MAX_DETAIL_ENTRIES:
            break
    if any(name is None and call_id for call_id, name, _ in results):
        asked = [bases[i] for i in range(start, len(raw)) if roles[i - start] == "assistant"]
        names = {call_id: name for call_id, name, _ in _flattened_calls(attrs, asked) if call_id}
        results = [(call_id, name or names.get(call_id or ""), content) for call_id, name, content in results]
    return results


_TOOL_MESSAGE_PREFIXES = ('{"type": "tool"', '{"type":"tool"')


def _tool_message(value: Any, parse: Callable[[], Any]) -> dict[str, Any] | None:
    """The fields of LangChain's serialized ToolMessage (``{"type": "tool", "data": {…}}``), which
    its TOOL spans record as ``output.value``; ``parse()`` (``value`` parsed) is called only when
    the value starts so."""
    if not isinstance(value, str) or not value.startswith(_TOOL_MESSAGE_PREFIXES):
        return None
    parsed = parse()
    data = parsed.get("data") if isinstance(parsed, dict) else None
    return data if isinstance(data, dict) and "content" in data else None


_WORDS_CALLS = 3
_WORDS_NAME_CHARS = 64
_WORDS_VALUE_CHARS = 48
_WORDS_ARGS_CHARS = 160
_WORDS_PARSE_LIMIT = 8192


def _called_words(calls: list[_Call]) -> str:
    """A reply that only calls tools, in words: ``called lookup_order(order_id=1234)``; several
    calls as ``called a(…), b(…) and c(…)``, more than three as ``… and 5 more``. Bounded."""
    shown = [f"{_short(name, _WORDS_NAME_CHARS)}({_argument_words(args)})" for _, name, args in calls[:_WORDS_CALLS]]
    extra = len(calls) - len(shown)
    if extra > 0:
        shown.append(f"{extra} more" if len(calls) < MAX_DETAIL_ENTRIES else f"at least {extra} more")
    if len(shown) == 1:
        return "called " + shown[0]
    return "called " + ", ".join(shown[:-1]) + " and " + shown[-1]


def _argument_words(arguments: Any) -> str:
    """Arguments as ``key=value`` with JSON-literal values (a JSON object), else their text."""
    if arguments is None:
        return ""
    if isinstance(arguments, str):
        text = arguments.strip()
        if not text.startswith("{") or len(text) > _WORDS_PARSE_LIMIT:
            return _short(text, _WORDS_ARGS_CHARS)
        try:
            arguments = orjson.loads(text)
        except orjson.JSONDecodeError:
            return _short(text, _WORDS_ARGS_CHARS)
    if not isinstance(arguments, dict):
        return _short(_literal(arguments), _WORDS_ARGS_CHARS)
    parts: list[str] = []
    length = 0
    for key, value in arguments.items():
        if isinstance(value, str) and len(value) > _WORDS_VALUE_CHARS:
            value = value[:_WORDS_VALUE_CHARS]  # only its start is shown: never encode all of it
        part = f"{_short(str(key), _WORDS_VALUE_CHARS)}={_short(_literal(value), _WORDS_VALUE_CHARS)}"
        parts.append(part)
        length += len(part) + 2
        if length > _WORDS_ARGS_CHARS:
            break
    return _short(", ".join(parts), _WORDS_ARGS_CHARS)


def _literal(value: Any) -> str:
    """``value`` as a JSON literal (``"sms"``, ``1234``, ``true``)."""
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:  # a type orjson cannot encode, or nested too deep
        return "…"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _name(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return str(value) or None
    return None


def _json_text(value: Any) -> str | None:
    """``value`` as detail text: a string as it is, anything else as JSON; bounded."""
    if value is None:
        return None
    if isinstance(value, str):
        return _cut(value)
    return _cut(_literal(value))


def _cut(text: str | None) -> str | None:
    """Detail text: at most :data:`MAX_DETAIL_CHARS` characters (cut with "…"), NUL characters
    and lone surrogates (which no database, nor orjson, takes) as U+FFFD."""
    if text is None:
        return None
    if len(text) > MAX_DETAIL_CHARS:
        text = text[:MAX_DETAIL_CHARS - 1] + "…"
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)
