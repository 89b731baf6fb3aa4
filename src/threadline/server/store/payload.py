"""How a span's text is stored: one payload per span, each value once, compressed when large.

The one home of the span storage format, used by ingest (the decode processes encode, so the
writer process only copies bytes), by every reader (``query/``) and by migration ``0006``.

A span's text — its display ``input`` and ``output``, the ``detail`` a turn's steps show, the
events JSON and the attributes JSON — is one ``spans.payload`` value (BLOB on SQLite, bytea on
PostgreSQL):

- the *body* is the UTF-8 of ``output NUL detail NUL input NUL input_key NUL output_key NUL
  events NUL attributes``. None of these can hold a NUL: ingest replaces NUL in text
  (``normalize._clean_text``), JSON escapes it, and a key holding one is never referenced;
- **each value once**: when ``input`` (or ``output``) is exactly the value of an attribute
  (``input.value``, the last user message of ``llm.input_messages``, ``output.value`` …), that
  attribute's value is stored as ``0`` in the attributes JSON (its place in key order kept) and
  its key is written as ``input_key`` (``output_key``); readers put the text back;
- a body of :data:`COMPRESS_AT` bytes or more is stored as ``02`` + a zstandard frame without
  its magic number, compressed with the frozen dictionary of the conventions' keys and framing
  (:mod:`.payload_dictionary`), when that is smaller than the body; otherwise, and for a smaller
  body, as ``01`` + the body. Payloads written before the dictionary are a plain zstandard
  frame (starting with the zstd magic number ``28 b5 2f fd``) and are read as they are. Any
  other first byte, a damaged frame or invalid UTF-8 raises :class:`PayloadError`.

``output`` and ``detail`` come first so a turn's steps (:func:`read_steps`) never parse the
attributes.
"""

from __future__ import annotations

import json
import threading
from typing import Any, NamedTuple

import orjson
import zstandard

from threadline.server.store.payload_dictionary import DICTIONARY

#: First bytes of a payload written before the dictionary: a plain zstandard frame (read only).
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: First byte of a payload stored without compression.
PLAIN = b"\x01"
#: First byte of a payload compressed with the dictionary (a zstandard frame without its magic number).
DICTIONARY_FRAME = b"\x02"
#: Bodies this long (UTF-8 bytes) or longer are compressed, if that makes them smaller; shorter
#: ones gain nothing even with the dictionary.
COMPRESS_AT = 48
#: zstandard level: 3 (its default) compresses chat traffic about 6× at ~200 MB/s per core.
LEVEL = 3
_PARAMETERS = zstandard.ZstdCompressionParameters.from_level(
    LEVEL, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_dict_id=False, write_content_size=True)
_DICTIONARY = zstandard.ZstdCompressionDict(DICTIONARY, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
_DICTIONARY.precompute_compress(compression_params=_PARAMETERS)  # once: every compressor shares it
_SEP = "\x00"
_BSEP = b"\x00"
_SECTIONS = 7


class PayloadError(ValueError):
    """A stored span payload that cannot be read (damaged or of an unknown format)."""


class SpanPayload(NamedTuple):
    """A span's stored text, as ingest produced it."""

    input: str | None
    output: str | None
    detail: str | None
    events_json: str
    attributes_json: str
    #: Attribute keys whose value is ``input`` / ``output`` (stored once, as those).
    input_key: str | None = None
    output_key: str | None = None

    def attributes(self) -> dict[str, Any]:
        """The span's attributes exactly as received (values stored once put back in place)."""
        attributes = _loads(self.attributes_json)
        if not isinstance(attributes, dict):
            return {}
        if self.input_key is not None:
            attributes[self.input_key] = self.input
        if self.output_key is not None:
            attributes[self.output_key] = self.output
        return attributes

    def events(self) -> list[Any]:
        """The span's events (JSON array), ``[]`` when unreadable."""
        events = _loads(self.events_json)
        return events if isinstance(events, list) else []


class _Codecs(threading.local):
    """zstandard contexts are not thread-safe: one pair per thread."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(dict_data=_DICTIONARY, compression_params=_PARAMETERS)
        self.decompressor = zstandard.ZstdDecompressor(dict_data=_DICTIONARY, format=zstandard.FORMAT_ZSTD1_MAGICLESS)
        #: For payloads written before the dictionary.
        self.plain_decompressor = zstandard.ZstdDecompressor()


_codecs = _Codecs()


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        try:  # what orjson refuses (a lone surrogate escape, a huge integer) the json module reads
            return json.loads(text)
        except (ValueError, RecursionError):
            return None


def _key_of(attributes: dict[str, Any], text: str | None, preferred: str) -> str | None:
    """The key of an attribute whose value is exactly ``text`` (``preferred`` first)."""
    if not text:
        return None
    if attributes.get(preferred) == text:
        return preferred
    for key, value in attributes.items():
        if value == text and isinstance(value, str) and _SEP not in key:
            return key
    return None


def encode_span(input: str | None, output: str | None, detail: str | None, events_json: str,
                attributes: dict[str, Any]) -> bytes:
    """The payload of one span (run in the decode processes; the writer stores it as it is).

    ``attributes`` is serialized here (orjson, ``str()`` for what JSON cannot hold), with the
    value of an attribute equal to ``input`` or ``output`` stored once.
    """
    input_key = _key_of(attributes, input, "input.value")
    output_key = _key_of(attributes, output, "output.value")
    if input_key is not None or output_key is not None:
        attributes = dict(attributes)
        if input_key is not None:
            attributes[input_key] = 0
        if output_key is not None:
            attributes[output_key] = 0
    # The attributes stay the bytes orjson wrote (UTF-8): the body is joined as bytes, so the
    # largest section is never decoded to a str and encoded back.
    head = _SEP.join((output or "", detail or "", input or "", input_key or "", output_key or "", events_json))
    return _stored(_BSEP.join((head.encode(), orjson.dumps(attributes, default=str))))


def encode_body(payload: SpanPayload) -> bytes:
    """The stored bytes of ``payload`` whose values are already stored once (see :func:`encode_span`)."""
    return _stored(_SEP.join((payload.output or "", payload.detail or "", payload.input or "", payload.input_key or "",
                              payload.output_key or "", payload.events_json, payload.attributes_json)).encode())


def _stored(body: bytes) -> bytes:
    """``body`` (the sections joined, UTF-8) as stored: compressed when large and smaller for it."""
    if len(body) >= COMPRESS_AT:
        frame = _codecs.compressor.compress(body)
        if len(frame) < len(body):
            return DICTIONARY_FRAME + frame
    return PLAIN + body


def _body(blob: bytes | memoryview) -> str:
    data = bytes(blob)
    if data[:1] == DICTIONARY_FRAME:
        try:
            raw = _codecs.decompressor.decompress(data[1:])
        except zstandard.ZstdError as exc:
            raise PayloadError(f"damaged span payload ({len(data)} bytes): {exc}") from exc
    elif data[:4] == ZSTD_MAGIC:
        try:
            raw = _codecs.plain_decompressor.decompress(data)
        except zstandard.ZstdError as exc:
            raise PayloadError(f"damaged span payload ({len(data)} bytes): {exc}") from exc
    elif data[:1] == PLAIN:
        raw = data[1:]
    else:
        raise PayloadError(f"unknown span payload format (first byte {data[:1].hex() or 'none'}, {len(data)} bytes)")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise PayloadError(f"damaged span payload: {exc}") from exc


def read_span(blob: bytes | memoryview) -> SpanPayload:
    """Everything a payload holds (raises :class:`PayloadError` when it cannot be read)."""
    parts = _body(blob).split(_SEP, _SECTIONS - 1)
    if len(parts) != _SECTIONS:
        raise PayloadError(f"damaged span payload: {len(parts)} of {_SECTIONS} sections")
    output, detail, input, input_key, output_key, events, attributes = parts
    return SpanPayload(input or None, output or None, detail or None, events or "[]", attributes or "{}",
                       input_key or None, output_key or None)


def read_steps(blob: bytes | memoryview) -> tuple[str | None, str | None]:
    """``(output, detail)`` of a payload: what a turn's steps show, without parsing the attributes."""
    parts = _body(blob).split(_SEP, 2)
    if len(parts) != 3:
        raise PayloadError(f"damaged span payload: {len(parts)} of {_SECTIONS} sections")
    return parts[0] or None, parts[1] or None


def encode_stored(input: str | None, output: str | None, detail: str | None, events_json: str | None,
                  attributes_json: str | None) -> bytes:
    """The payload of a span stored before payloads (migration ``0006``): its columns as they were.

    Attributes that JSON readers can parse are stored as :func:`encode_span` would; others
    (never written by this version's ingest) are kept as they are, without storing a value once.
    """
    events_json = events_json or "[]"
    try:
        attributes = orjson.loads(attributes_json or "{}")
        if isinstance(attributes, dict):
            return encode_span(input, output, detail, events_json, attributes)
    except orjson.JSONDecodeError:
        pass
    except TypeError:  # what orjson cannot write back (an integer beyond 64 bits)
        pass
    return encode_body(SpanPayload(input, output, detail, events_json, attributes_json or "{}"))
