"""A span's tags and metadata pairs, as the ``trace_tags`` and ``trace_metadata`` tables hold them.

Read once per span at ingest (the decode processes, through :mod:`threadline.server.ingest.normalize`)
and by migration 0008 from stored payloads; never at query time (span attributes are stored
compressed, SQL cannot read them).

- **Tags**: OpenInference ``tag.tags``, a list of strings (or a JSON string holding one, or a
  single string). Blank and non-string entries are skipped, numbers are written as text.
- **Metadata**: the top-level keys of the ``metadata`` object (a JSON string or an object), each
  with its value as text: a string as it is, any other JSON value as compact JSON
  (``3``, ``true``, ``null``, ``{"a":1}``).

Both are bounded, because they are indexed (a PostgreSQL btree entry must stay under ~2.7 kB) and
a hostile span must not write thousands of rows: at most :data:`MAX_TAGS` tags of at most
:data:`MAX_TAG_CHARS` characters, at most :data:`MAX_METADATA_PAIRS` pairs whose key has at most
:data:`MAX_KEY_CHARS` and whose value at most :data:`MAX_VALUE_CHARS` characters. A longer tag,
key or value is left out rather than cut: a filter matches exact values, and a cut value would
match nothing the app ever sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

MAX_TAGS = 32
MAX_TAG_CHARS = 256
MAX_METADATA_PAIRS = 32
MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 256
_JSON_PARSE_LIMIT = 64 * 1024
_SURROGATE = re.compile("[\ud800-\udfff]")

Tags = tuple[str, ...]
MetadataPairs = tuple[tuple[str, str], ...]


def _clean(text: str) -> str:
    """Text every backend can store (NUL and lone surrogates become U+FFFD), stripped."""
    text = text.strip()
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def span_tags(value: Any) -> Tags:
    """The tags of a ``tag.tags`` attribute value, in order, each once, bounded."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("[") and len(stripped) <= _JSON_PARSE_LIMIT:
            try:
                value = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                value = [value]
        else:
            value = [value]
    if not isinstance(value, list | tuple):
        return ()
    found: dict[str, None] = {}
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            continue
        tag = _clean(item if isinstance(item, str) else str(item))
        if tag and len(tag) <= MAX_TAG_CHARS:
            found.setdefault(tag)
            if len(found) >= MAX_TAGS:
                break
    return tuple(found)


def metadata_pairs(metadata: Mapping[str, Any]) -> MetadataPairs:
    """The ``(key, value as text)`` pairs of a parsed ``metadata`` object's top-level keys, bounded."""
    pairs: list[tuple[str, str]] = []
    for raw_key, raw_value in metadata.items():
        if not isinstance(raw_key, str):
            continue
        key = _clean(raw_key)
        if not key or len(key) > MAX_KEY_CHARS:
            continue
        if isinstance(raw_value, str):
            value = _clean(raw_value)
        else:
            try:
                value = _clean(orjson.dumps(raw_value, option=orjson.OPT_SORT_KEYS).decode())
            except (TypeError, orjson.JSONEncodeError):
                continue
        if len(value) > MAX_VALUE_CHARS:
            continue
        pairs.append((key, value))
        if len(pairs) >= MAX_METADATA_PAIRS:
            break
    return tuple(pairs)


def parse_metadata(value: Any) -> dict[str, Any]:
    """The ``metadata`` attribute as an object: given as one, or as a JSON string holding one."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{") and len(value) <= 1024 * 1024:
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}
