"""Flattened chat message lists (``llm.input_messages.N.message.*``, ``llm.output_messages.N.…``):
their attribute keys, their messages read by index (all of them, or only the tail a turn needs),
and the role and content text of a message in any form.

Indices are looked up one by one, never parsed from keys, so a hostile
``llm.input_messages.4294967295`` allocates nothing; the numbering may start past 0 (the Responses
API, a history whose first messages an attribute limit dropped).
"""

from __future__ import annotations

from typing import Any

from threadline import conventions as cv

#: A span that lost its first messages to an attribute limit still has at least this many
#: attributes (the smallest limits in use are OpenTelemetry's default 128 and the server's cap).
_EVICTION_MIN_ATTRIBUTES = 64
#: No chat history has more messages than this: a larger index is hostile, not a history.
_MAX_MESSAGE_INDEX = 2**20
_ROLE_ALIASES = {"human": "user", "ai": "assistant", "model": "assistant", "bot": "assistant"}
# OpenInference keys that threadline.conventions does not name (yet).
_MESSAGE_TOOL_CALL_ID = "message.tool_call_id"


def _keys_of(base: str) -> tuple[str, str, str, str, str]:
    """The :func:`_message_keys` of the message with key prefix ``base``."""
    return (base + cv.MESSAGE_ROLE, base + cv.MESSAGE_CONTENT, base, base + _MESSAGE_TOOL_CALL_ID,
            f"{base}{cv.MESSAGE_CONTENTS}.0.message_content.text")


_MESSAGE_KEYS = {prefix: [_keys_of(f"{prefix}.{i}.") for i in range(256)]
                 for prefix in (cv.LLM_INPUT_MESSAGES, cv.LLM_OUTPUT_MESSAGES)}


def flattened_messages(attrs: dict[str, Any], prefix: str) -> list[tuple[str, str | None]]:
    """``prefix.N.message.role/content`` attributes as an ordered list of (role, content).

    OpenInference numbers messages 0, 1, 2, …; they are looked up by index, a few dict lookups
    per message, never by parsing every key. Indices are never used to allocate: a hostile key
    such as ``llm.input_messages.4294967295.message.content`` is stored with the span's
    attributes but does not become turn text.
    """
    return [(_role(role), _content_text(content)) for role, content in _raw_messages(attrs, prefix)]


def _message_keys(prefix: str, index: int) -> tuple[str, str, str, str, str]:
    """(role key, content key, key prefix, tool call id key, first text part key) of message
    ``index``; built once for the first ones."""
    known = _MESSAGE_KEYS.get(prefix)
    if known is not None and index < len(known):
        return known[index]
    return _keys_of(f"{prefix}.{index}.")


def _raw_messages(attrs: dict[str, Any], prefix: str, bases: list[str] | None = None) -> list[tuple[Any, Any]]:
    """The (role, content) attribute values of each message, unconverted (converting every one of
    a long chat history costs more than the few a caller looks at).

    Numbering may start past 0 (:func:`_lowest_index`: the Responses API, evicted history). A
    ``user`` message with a ``message.tool_call_id`` is a tool result (Bedrock sends Anthropic's
    ``tool_result`` so) and gets the role ``tool``. ``bases`` receives each message's key prefix.
    """
    out: list[tuple[Any, Any]] = []
    get = attrs.get
    index = 0
    while True:
        role_key, content_key, base, tool_call_id_key, part_key = _message_keys(prefix, index)
        role = get(role_key)
        content = get(content_key)
        if content is None:
            content = _content_parts(attrs, base) if get(part_key) is not None else None
            if role is None and content is None:
                if index == 0 and not out:
                    start = 1 if get(_message_keys(prefix, 1)[0]) is not None else (
                        _lowest_index(attrs, prefix) if len(attrs) >= _EVICTION_MIN_ATTRIBUTES else None)
                    if start is not None and start > 0:
                        index = start
                        continue
                return out
        if role == "user" and get(tool_call_id_key):
            role = "tool"
        out.append((role, content))
        if bases is not None:
            bases.append(base)
        index += 1


def _has_message(attrs: dict[str, Any], prefix: str, index: int) -> bool:
    role_key, content_key, _, _, part_key = _message_keys(prefix, index)
    return role_key in attrs or content_key in attrs or part_key in attrs


def _first_index(attrs: dict[str, Any], prefix: str) -> int | None:
    """Where the numbering of the messages starts (0; 1 for the Responses API; later when an
    attribute limit dropped the first messages); ``None`` without messages."""
    if _has_message(attrs, prefix, 0):
        return 0
    if _has_message(attrs, prefix, 1):
        return 1
    return _lowest_index(attrs, prefix) if len(attrs) >= _EVICTION_MIN_ATTRIBUTES else None


def _tail_messages(attrs: dict[str, Any], prefix: str, bases: list[str]) -> list[tuple[Any, Any]]:
    """The messages from the one before the last user message with text to the end — all that
    the turn text, the turn key and the tool results read — as :func:`_raw_messages` gives them.

    The last index is found by exponential then binary search (a few lookups, not one per
    message: every LLM call of a long chat resends the whole history). Without a user message,
    every message.
    """
    first = _first_index(attrs, prefix)
    if first is None:
        return []
    step = 1
    while step <= _MAX_MESSAGE_INDEX and _has_message(attrs, prefix, first + step):
        step *= 2
    low, high = first + step // 2, first + step  # message `low` exists, `high` does not
    if step == 1:
        low = first
    while high - low > 1:
        middle = (low + high) // 2
        if _has_message(attrs, prefix, middle):
            low = middle
        else:
            high = middle
    get = attrs.get
    out: list[tuple[Any, Any]] = []
    seen_user = False
    for index in range(low, first - 1, -1):
        role_key, content_key, base, tool_call_id_key, part_key = _message_keys(prefix, index)
        role = get(role_key)
        content = get(content_key)
        if content is None and get(part_key) is not None:
            content = _content_parts(attrs, base)
        if role == "user" and get(tool_call_id_key):
            role = "tool"
        out.append((role, content))
        bases.append(base)
        if seen_user:
            break
        seen_user = _role(role) == "user" and bool(_content_text(content))
    out.reverse()
    bases.reverse()
    return out


def _lowest_index(attrs: dict[str, Any], prefix: str) -> int | None:
    """The lowest message index present under ``prefix``, when the numbering does not start at 0:
    the Responses API starts at 1, and an attribute limit (the SDK's, which evicts the oldest, or
    the server's, which keeps the newest messages) can drop the first messages of a long history.
    Only read when message 0 is missing; an index past any real history (a hostile
    ``llm.input_messages.4294967295``) is not a start."""
    head = prefix + "."
    lowest: int | None = None
    for key in attrs:
        if key.startswith(head):
            number, _, _ = key[len(head):].partition(".")
            if number.isdigit() and int(number) <= _MAX_MESSAGE_INDEX and (lowest is None or int(number) < lowest):
                lowest = int(number)
    return lowest


def _last_text(raw: list[tuple[Any, Any]], roles: tuple[str, ...]) -> str | None:
    """The text of the last message with one of ``roles`` and some text."""
    for role, content in reversed(raw):
        if _role(role) in roles:
            text = _content_text(content)
            if text:
                return text
    return None


def _last_plain_text(raw: list[tuple[Any, Any]], roles: tuple[str, ...]) -> str | None:
    """Like :func:`_last_text`, for string contents only (a list-valued ``message.content`` is
    an instrumentor's ``str()`` of provider objects, e.g. Mistral's ``["text='…' type='text'"]``)."""
    for role, content in reversed(raw):
        if isinstance(content, str) and content and _role(role) in roles:
            return content
    return None


def _content_parts(attrs: dict[str, Any], base: str) -> str | None:
    """Text parts of a multimodal message (``message.contents.K.message_content.text``)."""
    parts = []
    part = 0
    while (text := attrs.get(f"{base}{cv.MESSAGE_CONTENTS}.{part}.message_content.text")) is not None:
        parts.append(str(text))
        part += 1
    return "\n".join(parts) or None


_KNOWN_ROLES = {**{role: role for role in ("user", "assistant", "system", "tool", "function", "developer")},
                **_ROLE_ALIASES}


def _role(value: Any) -> str:
    if value.__class__ is str and (known := _KNOWN_ROLES.get(value)) is not None:
        return known
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


def _class_role(class_path: Any) -> str:
    """The role in a LangChain class path (``[…, "HumanMessage"]`` → ``human``)."""
    if isinstance(class_path, list) and class_path and isinstance(class_path[-1], str):
        return class_path[-1].replace("Message", "").lower()
    return ""


def _is_tool_result_block(block: Any) -> bool:
    return isinstance(block, dict) and (
        block.get("type") == "tool_result" or "toolResult" in block or "functionResponse" in block
        or "function_response" in block)


def _only_tool_results(content: Any) -> bool:
    """Whether a message's content is tool results only (Anthropic ``tool_result`` blocks,
    Bedrock Converse ``toolResult``, Gemini ``functionResponse`` parts)."""
    return isinstance(content, list) and bool(content) and all(_is_tool_result_block(b) for b in content)
