"""A span's ``input.value`` / ``output.value``: parsed as JSON (bounded, with orjson) and read as
the text a person would call it: the last message of a JSON message list (OpenAI, LangChain's
serialized messages, plain ``{role, content}``), an ``input`` / ``answer``-like field, or the value
as it is.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from threadline.server.chat.messages import _class_role, _content_text, _only_tool_results, _role

_JSON_PARSE_LIMIT = 1024 * 1024


def _message_of(obj: Any) -> tuple[str, str | None] | None:
    """(role, text) of a chat message in OpenAI, LangChain (serialized) or plain form."""
    if not isinstance(obj, dict):
        return None
    kwargs = obj.get("kwargs") if isinstance(obj.get("kwargs"), dict) else None
    if kwargs is not None:
        role = _role(kwargs.get("type") or _class_role(obj.get("id")))
        content = kwargs.get("content")
    elif "role" in obj or ("type" in obj and "content" in obj):
        role = _role(obj.get("role") or obj.get("type"))
        content = obj.get("content")
    else:
        return None
    if role == "user" and _only_tool_results(content):
        role = "tool"
    return role, _content_text(content)


def _messages_in(value: Any) -> list[tuple[str, str | None]] | None:
    candidates = value.get("messages") if isinstance(value, dict) else value
    if not isinstance(candidates, list):
        return None
    if candidates and all(isinstance(c, list) for c in candidates):  # LangChain: [[msg, …]]
        candidates = [m for group in candidates for m in group]
    messages = [m for m in (_message_of(c) for c in candidates) if m is not None]
    return messages or None


def _parse_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    stripped = value.lstrip()
    if not stripped or stripped[0] not in "[{" or len(value) > _JSON_PARSE_LIMIT:
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        pass
    try:  # orjson refuses what the json module reads: a lone surrogate escape (``"\\udc00"``)
        return json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        return value


def _last(messages: list[tuple[str, str | None]], roles: tuple[str, ...]) -> str | None:
    for role, text in reversed(messages):
        if role in roles and text:
            return text
    return None


_INPUT_KEYS = ("input", "question", "query", "message", "prompt", "text", "user_input", "content")
_OUTPUT_KEYS = ("output", "answer", "response", "content", "text", "result", "completion")


def _value_text(raw: Any, value: Any, keys: tuple[str, ...], roles: tuple[str, ...]) -> str | None:
    """The text of ``raw`` (an attribute value; ``value`` is it parsed when JSON)."""
    if raw is None:
        return None
    if isinstance(value, str):
        return value
    messages = _messages_in(value)
    if messages:
        text = _last(messages, roles) or _last(messages, tuple({r for r, _ in messages}))
        if text:
            return text
    if isinstance(value, dict):
        for key in keys:
            if isinstance(value.get(key), str) and value[key].strip():
                return str(value[key])
        message = _message_of(value)
        if message and message[1]:
            return message[1]
    return raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
