"""``parse_params``: strings validated with each declared parameter's type, as FastAPI validates a query string."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import pytest
from pydantic import Field

from threadline.server.query.errors import InvalidQuery
from threadline.server.query.parameters import Param, Timestamp, parse_params
from threadline.server.query.sessions import SESSION_PARAMS, SessionFilter

PARAMS = (
    Param("start", Timestamp | None, "a time"),
    Param("count", Annotated[int, Field(ge=0)] | None, "a count"),
    Param("flag", bool | None, "a flag"),
    Param("names", list[str] | None, "repeatable"),
)


def test_values_are_validated_and_every_declared_name_is_there() -> None:
    values = parse_params(PARAMS, {"start": "2026-11-21T10:00:00+01:00", "count": "3", "flag": "yes",
                                   "names": ["a", "b"], "other": "ignored"})
    assert values == {"start": datetime(2026, 11, 21, 9, 0, tzinfo=UTC), "count": 3, "flag": True,
                      "names": ["a", "b"]}
    assert values["start"].utcoffset() == timedelta(hours=1)  # kept as given, as the API keeps it
    assert parse_params(PARAMS, {}) == dict.fromkeys(("start", "count", "flag", "names"))


def test_one_value_of_a_repeatable_parameter_is_a_list_and_the_last_of_several_values_counts() -> None:
    assert parse_params(PARAMS, {"names": "a", "count": ["1", "2"]})["names"] == ["a"]
    assert parse_params(PARAMS, {"count": ["1", "2"]})["count"] == 2
    assert [p.name for p in PARAMS if p.repeated] == ["names"]


@pytest.mark.parametrize("raw, message", [
    ({"count": "abc"}, "count: 'abc' is not a valid integer"),
    ({"count": "-1"}, "count: '-1' is less than 0"),
    ({"flag": "maybe"}, "flag: 'maybe' is not true or false"),
    ({"start": "1700000000"}, "start: '1700000000' is not an RFC 3339 time (e.g. 2026-11-21T10:00:00Z)"),
    ({"start": "2026-11-21T10:00"}, "start: '2026-11-21T10:00' is not an RFC 3339 time"),  # no offset
    ({"start": "2026-02-30T10:00:00Z"}, "start: '2026-02-30T10:00:00Z' is not a valid date and time"),
])
def test_a_refusal_names_the_parameter_and_says_what_is_wrong(raw: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidQuery) as refused:
        parse_params(PARAMS, raw)
    assert str(refused.value).startswith(message), refused.value


def test_the_session_filter_of_its_parameters() -> None:
    values = parse_params(SESSION_PARAMS, {"min_turns": "2", "metadata": ["plan:pro", "seats:3"],
                                           "end": "2026-11-21T10:00:00Z"})
    assert SessionFilter.from_params(values) == SessionFilter(
        min_turns=2, metadata=(("plan", "pro"), ("seats", "3")),
        end=datetime(2026, 11, 21, 10, tzinfo=UTC))
