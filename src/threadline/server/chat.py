"""Chat message lists as OpenInference and the providers send them, read without I/O.

Used at ingest (:mod:`threadline.server.ingest.normalize`) and by migrations that re-derive
what ingest derives. A message list comes either flattened
(``llm.input_messages.N.message.role`` / ``.content``) or as JSON in ``input.value`` /
``output.value`` (an OpenAI request, LangChain's serialized messages). Indices are looked up one
by one, never parsed from keys, so a hostile ``llm.input_messages.4294967295`` allocates nothing.

:func:`turn_key` names the turn a message-list input belongs to: the last user message, matched
by its text and the message just before it (DESIGN §3).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from threadline import conventions as cv

_JSON_PARSE_LIMIT = 1024 * 1024
_ROLE_ALIASES = {"human": "user", "ai": "assistant", "model": "assistant", "bot": "assistant"}
_MESSAGE_KEYS = {
    prefix: [(f"{prefix}.{i}.{cv.MESSAGE_ROLE}", f"{prefix}.{i}.{cv.MESSAGE_CONTENT}", f"{prefix}.{i}.")
             for i in range(256)]
    for prefix in (cv.LLM_INPUT_MESSAGES, cv.LLM_OUTPUT_MESSAGES)
}
#: Prefix of a turn key derived from a message list (a plain-text turn is keyed by its trace id).
MESSAGE_KEY_PREFIX = "m:"


def flattened_messages(attrs: dict[str, Any], prefix: str) -> list[tuple[str, str | None]]:
    """``prefix.N.message.role/content`` attributes as an ordered list of (role, content).

    OpenInference numbers messages 0, 1, 2, …; they are looked up by index, a few dict lookups
    per message, never by parsing every key. Indices are never used to allocate: a hostile key
    such as ``llm.input_messages.4294967295.message.content`` is stored with the span's
    attributes but does not become turn text.
    """
    return [(_role(role), _content_text(content)) for role, content in _raw_messages(attrs, prefix)]


def _message_keys(prefix: str, index: int) -> tuple[str, str, str]:
    """(role key, content key, key prefix) of message ``index``; built once for the first ones."""
    known = _MESSAGE_KEYS.get(prefix)
    if known is not None and index < len(known):
        return known[index]
    base = f"{prefix}.{index}."
    return base + cv.MESSAGE_ROLE, base + cv.MESSAGE_CONTENT, base


def _raw_messages(attrs: dict[str, Any], prefix: str) -> list[tuple[Any, Any]]:
    """The (role, content) attribute values of each message, unconverted (converting every one of
    a long chat history costs more than the few a caller looks at)."""
    out: list[tuple[Any, Any]] = []
    get = attrs.get
    index = 0
    while True:
        role_key, content_key, base = _message_keys(prefix, index)
        role = get(role_key)
        content = get(content_key)
        if content is None:
            content = _content_parts(attrs, base)
            if role is None and content is None:
                return out
        out.append((role, content))
        index += 1


def _last_text(raw: list[tuple[Any, Any]], roles: tuple[str, ...]) -> str | None:
    """The text of the last message with one of ``roles`` and some text."""
    for role, content in reversed(raw):
        if _role(role) in roles:
            text = _content_text(content)
            if text:
                return text
    return None


def _content_parts(attrs: dict[str, Any], base: str) -> str | None:
    """Text parts of a multimodal message (``message.contents.K.message_content.text``)."""
    parts = []
    part = 0
    while (text := attrs.get(f"{base}{cv.MESSAGE_CONTENTS}.{part}.message_content.text")) is not None:
        parts.append(str(text))
        part += 1
    return "\n".join(parts) or None


def _role(value: Any) -> str:
    role = str(value or "").lower()
    return _ROLE_ALIASES.get(role, role)


def _content_text(content: Any) -> str | None:
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [_content_text(p.get("text") if isinstance(p, dict) else p) for p in content]
        joined = "\n".join(p for p in parts if p)
        return joined or None
    if isinstance(content, dict):
        return _content_text(content.get("text") or content.get("content"))
    return str(content)


def _message_of(obj: Any) -> tuple[str, str | None] | None:
    """(role, text) of a chat message in OpenAI, LangChain (serialized) or plain form."""
    if not isinstance(obj, dict):
        return None
    kwargs = obj.get("kwargs") if isinstance(obj.get("kwargs"), dict) else None
    if kwargs is not None:
        role = kwargs.get("type") or (obj.get("id") or [""])[-1].replace("Message", "").lower()
        return _role(role), _content_text(kwargs.get("content"))
    if "role" in obj or ("type" in obj and "content" in obj):
        return _role(obj.get("role") or obj.get("type")), _content_text(obj.get("content"))
    return None


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


def input_text(attrs: dict[str, Any]) -> str | None:
    """The text a person would call this span's input (the last user message for chat)."""
    messages = _raw_messages(attrs, cv.LLM_INPUT_MESSAGES)
    if messages:
        text = _last_text(messages, ("user",)) or _last_text(messages, ("user", "system", "tool", "assistant", ""))
        if text:
            return text
    return _value_text(attrs.get(cv.INPUT_VALUE), _INPUT_KEYS, ("user",))


def output_text(attrs: dict[str, Any]) -> str | None:
    """The text a person would call this span's output (the assistant reply for chat)."""
    messages = _raw_messages(attrs, cv.LLM_OUTPUT_MESSAGES)
    if messages:
        text = _last_text(messages, ("assistant", "")) or _last_text(
            messages, ("assistant", "user", "tool", "system", ""))
        if text:
            return text
    return _value_text(attrs.get(cv.OUTPUT_VALUE), _OUTPUT_KEYS, ("assistant",))


def _value_text(raw: Any, keys: tuple[str, ...], roles: tuple[str, ...]) -> str | None:
    if raw is None:
        return None
    value = _parse_json(raw)
    if isinstance(value, str):
        return value
    messages = _messages_in(value)
    if messages:
        text = _last(messages, roles) or _last(messages, tuple({r for r, _ in messages}))
        if text:
            return text
    if isinstance(value, dict):
        choices = value.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            message = choice.get("message")
            text = _content_text(message.get("content")) if isinstance(message, dict) else _content_text(
                choice.get("text"))
            if text:
                return text
        generations = value.get("generations")
        if isinstance(generations, list) and generations:
            first = generations[0][0] if isinstance(generations[0], list) and generations[0] else generations[0]
            if isinstance(first, dict):
                text = _content_text(first.get("text")) or (
                    (_message_of(first.get("message")) or ("", None))[1])
                if text:
                    return text
        for key in keys:
            if isinstance(value.get(key), str) and value[key].strip():
                return str(value[key])
        message = _message_of(value)
        if message and message[1]:
            return message[1]
    return raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)


def _input_message_list(attrs: dict[str, Any]) -> list[tuple[Any, Any]] | None:
    """The input messages as (role, content) pairs, unconverted; ``None`` for a plain input."""
    raw = _raw_messages(attrs, cv.LLM_INPUT_MESSAGES)
    if raw:
        return raw
    value = attrs.get(cv.INPUT_VALUE)
    if not isinstance(value, str) or value.lstrip()[:1] not in ("[", "{"):
        return None
    messages = _messages_in(_parse_json(value))
    return [(role, text) for role, text in messages] if messages else None


def turn_key(attrs: dict[str, Any]) -> str | None:
    """The key of the turn a span's message-list input belongs to, or ``None`` for plain input.

    The turn is that of the list's last user message, identified by its text and the message
    just before it (role and text; nothing before the first message). So every LLM call of a tool
    loop (which resends the history plus tool results) shares the key of its user message, a
    repeated "yes" after another assistant reply is a new turn, and an app that trims old
    history still groups right. Order-independent: each span's key is its own.
    """
    raw = _input_message_list(attrs)
    if not raw:
        return None
    for index in range(len(raw) - 1, -1, -1):
        role, content = raw[index]
        if _role(role) != "user":
            continue
        digest = hashlib.blake2b(digest_size=12)
        digest.update((_content_text(content) or "").strip().encode("utf-8", "surrogatepass"))
        if index > 0:
            before_role, before_content = raw[index - 1]
            digest.update(b"\x1f" + _role(before_role).encode("utf-8", "surrogatepass") + b"\x1e")
            digest.update((_content_text(before_content) or "").strip().encode("utf-8", "surrogatepass"))
        return MESSAGE_KEY_PREFIX + digest.hexdigest()
    return None
