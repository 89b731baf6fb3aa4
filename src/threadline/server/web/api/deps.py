"""Request-scoped helpers shared by the API routers: a read connection, and a list's filter
parameters (declared once in ``query/``, :class:`~threadline.server.query.parameters.Param`) as
FastAPI query parameters."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from sqlalchemy import Connection

from threadline.server.query.parameters import Param
from threadline.server.store.engine import Store

T = TypeVar("T")
R = TypeVar("R")


def read_conn(request: Request) -> Iterator[Connection]:
    """A read connection for the duration of the request."""
    store: Store = request.app.state.store
    with store.read() as conn:
        yield conn


ReadConn = Annotated[Connection, Depends(read_conn)]


def query_parameters(params: Sequence[Param]) -> list[inspect.Parameter]:
    """``params`` as optional keyword-only query parameters of an endpoint or a dependency:
    ``name: Annotated[annotation, Query(description=…)] = None``."""
    return [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                              annotation=Annotated[p.annotation, Query(description=p.description)])
            for p in params]


def query_dependency(params: Sequence[Param], build: Callable[[dict[str, Any]], T]) -> Callable[..., T]:
    """A FastAPI dependency taking the query parameters ``params`` (validated and documented by
    FastAPI from their declaration) and returning ``build`` of their values, e.g.
    ``Depends(query_dependency(SESSION_PARAMS, SessionFilter.from_params))``.

    FastAPI lists a dependency's parameters after the endpoint's own ones; :func:`with_query`
    puts them in the endpoint's signature where the built value goes instead."""
    def dependency(**values: Any) -> T:
        return build(values)

    dependency.__signature__ = inspect.Signature(query_parameters(params))  # type: ignore[attr-defined]
    return dependency


def with_query(name: str, params: Sequence[Param],
               build: Callable[[dict[str, Any]], Any]) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorate an endpoint (below its route decorator) whose parameter ``name`` takes ``build`` of
    the query parameters ``params``: they replace ``name`` in the signature FastAPI reads, at its
    place, so the OpenAPI document lists them in the endpoint's order (a dependency's would come
    after all of the endpoint's own parameters)."""
    def decorate(endpoint: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(endpoint, eval_str=True)
        if name not in signature.parameters:
            raise TypeError(f"{endpoint.__name__} has no parameter {name!r}")
        spliced: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name == name:
                spliced.extend(query_parameters(params))
            else:  # keyword-only, as FastAPI passes them and as the spliced ones are
                spliced.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        names = [p.name for p in params]

        @functools.wraps(endpoint)
        def wrapper(**values: Any) -> R:
            built = build({n: values.pop(n) for n in names})
            return endpoint(**values, **{name: built})

        wrapper.__signature__ = signature.replace(parameters=spliced)  # type: ignore[attr-defined]
        return wrapper

    return decorate
