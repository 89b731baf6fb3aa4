"""The write-side record of one span, as the store receives it from ingest."""

from __future__ import annotations

import struct
from typing import NamedTuple

import msgspec

from threadline.server.store.labels import MetadataPairs, Tags


class SpanRecord(NamedTuple):
    """A normalized span plus what the rollups need (session, user, turn text, tokens, cost).

    A named tuple: records cross from the decode processes to the writer as MessagePack arrays
    (:func:`pack_records`), which msgspec encodes and decodes straight from and into named
    tuples, and a tuple is cheap to build and to slice into a row. The fields from ``trace_id``
    on are the columns of ``spans`` after ``project_id``, in order (:data:`SPAN_COLUMNS_AT`).
    ``input`` and ``output`` feed the trace and turn rollups; the span keeps them inside its
    ``payload`` (:mod:`.payload`), built in the decode process. ``tags`` and ``metadata`` come
    after the columns (with defaults): the rows of ``trace_tags`` and ``trace_metadata``
    (:mod:`.labels`), read from the attributes once, in the decode process.
    """

    project: str
    session_id: str | None
    user_id: str | None
    is_llm: bool
    error: str | None
    #: Which turn of its session this span's input belongs to (:func:`threadline.server.chat.turn_key`):
    #: set for a message-list input (the key of its last user message), ``None`` for plain text.
    turn_key: str | None
    #: The span's display text (bounded): the last user message of its input, the assistant's reply.
    input: str | None
    output: str | None
    # --- stored as the columns of `spans`, in this order ---
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str | None
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    #: input, output, detail (what a turn's steps need), events and attributes, each value once,
    #: compressed when large (:func:`threadline.server.store.payload.encode_span`).
    payload: bytes
    # --- not columns of `spans` ---
    #: The span's ``tag.tags``, bounded (:func:`threadline.server.store.labels.span_tags`).
    tags: Tags = ()
    #: The top-level ``(key, value as text)`` pairs of its ``metadata`` (:func:`.labels.metadata_pairs`).
    metadata: MetadataPairs = ()


#: ``record[SPAN_COLUMNS_AT:SPAN_COLUMNS_END]`` is the row of ``spans`` after its ``project_id``.
SPAN_COLUMNS_AT = SpanRecord._fields.index("trace_id")
SPAN_COLUMNS_END = SpanRecord._fields.index("payload") + 1


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[SpanRecord])


def pack_records(records: list[SpanRecord]) -> bytes:
    """Records as one bytes object, to cross from a decode process to the writer process.

    MessagePack by msgspec, each record an array of its fields: packing and unpacking take about
    60 % of the time pickle takes for the same records (about 6 µs against 10 per span of the
    benchmark's payloads, packing twice as fast), and the writer process unpickles nothing it
    receives.
    """
    return _ENCODER.encode(records)


#: A MessagePack ``array 32`` header: its count is written once the last record is packed.
_ARRAY32 = struct.Struct(">BI")
_ARRAY32_TYPE = 0xDD


class RecordPacker:
    """Packs records one at a time, as a decode process makes them, into what
    :func:`pack_records` makes of the whole list (a MessagePack array of records).

    The records of a request never exist together: each is packed as soon as it is made, so a
    decode process holds the packed bytes of a large request, not those and its records too
    (about 10 MB of records for a 4,000-span request of 20 MB).
    """

    def __init__(self) -> None:
        self._buffer = bytearray(_ARRAY32.pack(_ARRAY32_TYPE, 0))
        #: How many records have been packed.
        self.count = 0

    def add(self, record: SpanRecord) -> None:
        """Append one record."""
        _ENCODER.encode_into(record, self._buffer, -1)
        self.count += 1

    def packed(self) -> bytearray:
        """The packed records (:func:`unpack_records` reads them); the packer is done."""
        _ARRAY32.pack_into(self._buffer, 0, _ARRAY32_TYPE, self.count)
        return self._buffer


def unpack_records(packed: bytes | bytearray | memoryview) -> list[SpanRecord]:
    """The records :func:`pack_records` packed (copied out: ``packed`` may be reused afterwards).

    Raises ``msgspec.DecodeError`` for anything else.
    """
    return _DECODER.decode(packed)
