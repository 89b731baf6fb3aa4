"""What crosses between the server and a decode process: errors come back as their own class."""

from __future__ import annotations

import pytest

from threadline.server.ingest.decoders import _ANSWERS, _ENCODER, _REQUESTS, DecodeAnswer, DecodeRequest, WorkerFailed
from threadline.server.ingest.handoff import WriterUnreachable
from threadline.server.ingest.otlp import DecodeError, PayloadTooLarge, ProjectNotAllowed, UnsupportedContentType
from threadline.server.ingest.outcomes import answer_for
from threadline.server.ingest.prepare import Prepared


@pytest.mark.parametrize("error", [DecodeError("bad"), PayloadTooLarge("big"), UnsupportedContentType("xml"),
                                   ProjectNotAllowed("not yours"), WriterUnreachable("gone"), WorkerFailed("bug")])
def test_an_error_crosses_as_its_own_class(error: Exception) -> None:
    answer = _ANSWERS.decode(_ENCODER.encode(DecodeAnswer.of_error(error)))
    with pytest.raises(type(error)) as raised:
        answer.result()
    assert type(raised.value) is type(error) and str(raised.value) == str(error)
    assert answer_for(raised.value) == answer_for(error)  # answered as if raised in this process


def test_a_summary_and_a_request_cross_whole() -> None:
    prepared = Prepared(spans=3, rejected=1, error_message="1 span without a trace id")
    assert _ANSWERS.decode(_ENCODER.encode(DecodeAnswer(prepared=prepared))).result() == prepared
    request = DecodeRequest(7, "application/x-protobuf", "gzip", None, frozenset({"a", "b"}))
    assert _REQUESTS.decode(_ENCODER.encode(request)) == request
