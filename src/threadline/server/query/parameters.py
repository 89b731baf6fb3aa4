"""Query parameters declared once: a list's filter parameters, read by the API, the UI and the CLI.

Each list (sessions, traces, users, metrics) declares its filters as a tuple of :class:`Param`
next to the model they build (``SESSION_PARAMS`` beside ``SessionFilter``, …). The REST API
turns a declaration into FastAPI query parameters (``web/api/deps.py``), so its validation and
its OpenAPI document come from here; the UI validates the same names with the same types through
:func:`parse_params`, which applies pydantic's lax validation of strings as FastAPI does for a
query string, and words a refusal as an :class:`InvalidQuery` naming the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BeforeValidator, TypeAdapter, ValidationError, WithJsonSchema

from threadline.server.query.errors import InvalidQuery

_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def _rfc3339_only(value: Any) -> Any:
    """Refuse what pydantic would read as a Unix time (``0.5``, ``1700000000``): times are RFC 3339."""
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("not an RFC 3339 time (e.g. 2026-11-21T10:00:00Z)")
    return value


#: A query time: an RFC 3339 date-time with its offset, as the schema's ``format: date-time`` says.
Timestamp = Annotated[datetime, BeforeValidator(_rfc3339_only),
                      WithJsonSchema({"type": "string", "format": "date-time"})]


@dataclass(frozen=True, slots=True)
class Param:
    """One query parameter of a list: its ``name``, the type its value is validated as
    (``annotation``, e.g. ``Timestamp | None``, ``Annotated[int, Field(ge=0)] | None``,
    ``list[str] | None`` for a repeatable one) and the ``description`` the API documents."""

    name: str
    annotation: Any
    description: str

    @property
    def repeated(self) -> bool:
        """Whether the parameter may be given several times (its type is a list)."""
        return _is_list(self.annotation)


def _is_list(annotation: Any) -> bool:
    """Whether ``annotation`` is a list type, possibly optional or annotated."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_list(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return any(_is_list(arg) for arg in get_args(annotation) if arg is not NoneType)
    return origin is list or annotation is list


@cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    """The (cached) validator of one parameter type."""
    return TypeAdapter(annotation)


#: How a refusal of pydantic's reads after ``name: 'value'`` (placeholders: the error's context).
_PROBLEMS = {
    "int_parsing": "is not a valid integer",
    "int_from_float": "is not a whole number",
    "float_parsing": "is not a valid number",
    "finite_number": "is not a finite number",
    "bool_parsing": "is not true or false",
    "datetime_parsing": "is not a valid date and time",
    "datetime_from_date_parsing": "is not a valid date and time",
    "greater_than_equal": "is less than {ge}",
    "greater_than": "is not more than {gt}",
    "less_than_equal": "is more than {le}",
    "less_than": "is not less than {lt}",
    "literal_error": "is not {expected}",
    "value_error": "is {error}",  # the validators of this package word their errors "not …"
}


def _message(name: str, exc: ValidationError) -> str:
    """The first refusal of ``exc`` as ``name: 'value' is not …``."""
    error = exc.errors()[0]
    problem = _PROBLEMS.get(error["type"])
    if problem is None:
        return f"{name}: {error['input']!r}: {error['msg']}"
    return f"{name}: {error['input']!r} " + problem.format(**{k: str(v) for k, v in error.get("ctx", {}).items()})


def parse_params(params: Sequence[Param], raw: Mapping[str, str | list[str]]) -> dict[str, Any]:
    """The values of ``params`` in ``raw`` (strings, as in a query string), validated with each
    parameter's type the way FastAPI validates a query string: every name of ``params`` is in the
    result, ``None`` when ``raw`` does not have it. A repeatable parameter takes a list (a single
    string is a list of one); any other takes the last of several values, as a query string's
    ``get`` does. A value its type refuses is an :class:`InvalidQuery` naming the parameter and
    saying what is wrong (``min_turns: 'abc' is not a valid integer``)."""
    values: dict[str, Any] = {}
    for param in params:
        value: str | list[str] | None = raw.get(param.name)
        if param.repeated and isinstance(value, str):
            value = [value]
        elif not param.repeated and isinstance(value, list):
            value = value[-1] if value else None
        if value is None:
            values[param.name] = None
            continue
        try:
            values[param.name] = _adapter(param.annotation).validate_python(value)
        except ValidationError as exc:
            raise InvalidQuery(_message(param.name, exc)) from exc
    return values
