"""Records cross from a decode process to the writer packed one at a time, read as one list."""

from __future__ import annotations

import msgspec
import pytest

from threadline.server.store.payload import encode_span
from threadline.server.store.records import RecordPacker, SpanRecord, pack_records, unpack_records


def record(i: int, text: str | None = "hi") -> SpanRecord:
    return SpanRecord(project="p", session_id=f"s{i % 7}", user_id=None if i % 2 else "u", is_llm=bool(i % 3),
                      error=None, turn_key=None, input=text, output="é" * (i % 5), trace_id=f"{i:032x}",
                      span_id=f"{i:016x}", parent_span_id=None, name="n", kind="LLM", start_ns=i, end_ns=i + 1,
                      status="OK", status_message=None, model="m", prompt_tokens=i, completion_tokens=2,
                      total_tokens=i + 2, cost=0.5 * i, payload=encode_span(text, None, None, "[]", {"i": i}),
                      tags=("t",) if i % 2 else (), metadata=(("k", str(i)),))


@pytest.mark.parametrize("count", [0, 1, 15, 16, 70_000])  # array sizes that MessagePack writes differently
def test_records_packed_one_at_a_time_read_as_the_list(count: int) -> None:
    records = [record(i) for i in range(count)]
    packer = RecordPacker()
    for each in records:
        packer.add(each)
    assert packer.count == count
    assert unpack_records(packer.packed()) == records == unpack_records(pack_records(records))


def test_a_packer_cut_short_is_refused_not_misread() -> None:
    packer = RecordPacker()
    for i in range(3):
        packer.add(record(i))
    packed = bytes(packer.packed())
    with pytest.raises(msgspec.DecodeError):
        unpack_records(packed[:-5])
