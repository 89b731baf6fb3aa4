"""Context helpers: put a session id, user id, metadata, tags or a prompt template on the context.

Every helper sets the same OpenTelemetry context keys as OpenInference's ``using_*`` helpers
(``session.id``, ``user.id``, ``metadata`` as a JSON string, ``tag.tags``,
``llm.prompt_template.template|version|variables``), so any OpenInference instrumentor copies them
onto its spans, and Threadline's span processor stamps them on every other span.

A helper is a context manager (``with`` and ``async with``) and a decorator. Each entry attaches
its own context and remembers its own token (per thread and per asyncio task), so one instance can
be reused concurrently, recursively and nested without leaking values or failing to detach.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from opentelemetry import context as otel_context

from threadline import conventions

__all__ = [
    "CONTEXT_KEYS",
    "using_attributes",
    "using_metadata",
    "using_prompt_template",
    "using_session",
    "using_tags",
    "using_user",
]

F = TypeVar("F", bound=Callable[..., Any])
_logger = logging.getLogger(__name__)

#: The OpenTelemetry context keys the helpers set (the ones OpenInference instrumentors read).
CONTEXT_KEYS: tuple[str, ...] = (
    conventions.SESSION_ID,
    conventions.USER_ID,
    conventions.METADATA,
    conventions.TAG_TAGS,
    conventions.PROMPT_TEMPLATE,
    conventions.PROMPT_TEMPLATE_VERSION,
    conventions.PROMPT_TEMPLATE_VARIABLES,
)

#: The open entries of the current thread / asyncio task: (helper, token) pairs, innermost last.
_ENTRIES: contextvars.ContextVar[tuple[tuple[_ContextHelper, object], ...]] = contextvars.ContextVar(
    "threadline_context_entries", default=()
)


# --- validation -------------------------------------------------------------------------------
def _check_id(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} ({value!r}); pass str({name}) if intended")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def _check_json_mapping(name: str, value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping (dict), got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be strings, got {type(key).__name__} key {key!r}")
    result = dict(value)
    try:
        json.dumps(result, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be JSON-serialisable: {exc}") from exc
    return result


def _check_tags(value: object) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"tags must be a list of strings, got {type(value).__name__} ({value!r})")
    for tag in value:
        if not isinstance(tag, str):
            raise TypeError(f"tags must be a list of strings, got a {type(tag).__name__} element ({tag!r})")
    return list(value)


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _outer_metadata(ctx: otel_context.Context) -> dict[str, Any]:
    raw = otel_context.get_value(conventions.METADATA, ctx)
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return dict(raw) if isinstance(raw, Mapping) else {}


# --- the helper base --------------------------------------------------------------------------
class _ContextHelper:
    """Sets a fixed set of context values; a context manager and a decorator."""

    __slots__ = ("_merge_metadata", "_metadata", "_values")

    def __init__(self, values: dict[str, object], metadata: dict[str, Any] | None, merge_metadata: bool) -> None:
        self._values = values
        self._metadata = metadata
        self._merge_metadata = merge_metadata

    def context(self, parent: otel_context.Context | None = None) -> otel_context.Context:
        """The context ``parent`` (default: the current one) with this helper's values set."""
        ctx = parent if parent is not None else otel_context.get_current()
        for key, value in self._values.items():
            ctx = otel_context.set_value(key, value, ctx)
        if self._metadata is not None:
            metadata = {**_outer_metadata(ctx), **self._metadata} if self._merge_metadata else self._metadata
            ctx = otel_context.set_value(conventions.METADATA, _dumps(metadata), ctx)
        return ctx

    # context manager ------------------------------------------------------------------------
    def __enter__(self) -> Self:
        token = otel_context.attach(self.context())
        _ENTRIES.set((*_ENTRIES.get(), (self, token)))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        entries = _ENTRIES.get()
        for i in range(len(entries) - 1, -1, -1):
            if entries[i][0] is self:
                token = entries[i][1]
                _ENTRIES.set(entries[:i] + entries[i + 1 :])
                otel_context.detach(token)  # type: ignore[arg-type]
                return
        _logger.warning(
            "%s exited in a thread or task it was not entered in; nothing to detach", type(self).__name__
        )

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # decorator ------------------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        """Decorate ``func`` so its whole body (every step of a generator) runs in this context."""
        if not callable(func):
            raise TypeError(f"{type(self).__name__}(...) decorates a callable, got {type(func).__name__}")
        if inspect.isclass(func) or inspect.isfunction(func) or inspect.ismethod(func):
            call: Any = func
        else:  # a callable object (or functools.partial): look at what calling it runs
            call = getattr(func, "__call__", func)  # noqa: B004
        if inspect.isasyncgenfunction(func) or inspect.isasyncgenfunction(call):
            return cast(F, self._wrap_async_generator(func))
        if inspect.isgeneratorfunction(func) or inspect.isgeneratorfunction(call):
            return cast(F, self._wrap_generator(func))
        if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call):
            return cast(F, self._wrap_coroutine(func))
        return cast(F, self._wrap_plain(func))

    def _wrap_plain(self, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = otel_context.attach(self.context())
            try:
                return func(*args, **kwargs)
            finally:
                otel_context.detach(token)

        return wrapper

    def _wrap_coroutine(self, func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = otel_context.attach(self.context())
            try:
                return await func(*args, **kwargs)
            finally:
                otel_context.detach(token)

        return wrapper

    def _wrap_generator(self, func: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Generator[Any, Any, Any]]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            body = _BodyContext(self.context())
            gen = body.run(func, *args, **kwargs)
            try:
                item = body.run(gen.send, None)
                while True:
                    try:
                        sent = yield item
                    except GeneratorExit:
                        body.run(gen.close)
                        raise
                    except BaseException as exc:
                        item = body.run(gen.throw, exc)
                    else:
                        item = body.run(gen.send, sent)
            except StopIteration as stop:
                return stop.value

        return wrapper

    def _wrap_async_generator(
        self, func: Callable[..., AsyncGenerator[Any, Any]]
    ) -> Callable[..., AsyncGenerator[Any, Any]]:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            body = _BodyContext(self.context())
            gen = body.run(func, *args, **kwargs)
            try:
                item = await body.run_async(gen.asend, None)
                while True:
                    try:
                        sent = yield item
                    except GeneratorExit:
                        await body.run_async(gen.aclose)
                        raise
                    except BaseException as exc:
                        item = await body.run_async(gen.athrow, exc)
                    else:
                        item = await body.run_async(gen.asend, sent)
            except StopAsyncIteration:
                return

        return wrapper

    def __repr__(self) -> str:
        shown = {**self._values, **({conventions.METADATA: self._metadata} if self._metadata is not None else {})}
        return f"{type(self).__name__}({shown!r})"


class _BodyContext:
    """The context a generator body runs in; it rolls forward from one step to the next."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: otel_context.Context) -> None:
        self._ctx = ctx

    def run(self, step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        token = otel_context.attach(self._ctx)
        try:
            result = step(*args, **kwargs)
            self._ctx = otel_context.get_current()
            return result
        finally:
            otel_context.detach(token)

    async def run_async(self, step: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        token = otel_context.attach(self._ctx)
        try:
            result = await step(*args)
            self._ctx = otel_context.get_current()
            return result
        finally:
            otel_context.detach(token)


# --- the public helpers -----------------------------------------------------------------------
class using_attributes(_ContextHelper):
    """Set any of session id, user id, metadata, tags and prompt template for a block or a function.

    Only the arguments given are set; everything else keeps the outer value. With
    ``merge_metadata=True`` the metadata is merged into the outer metadata (inner keys win)
    instead of replacing it.

    >>> with using_attributes(session_id="conv-42", user_id="alice", tags=["beta"]):
    ...     pass
    """

    __slots__ = ()

    def __init__(
        self,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        prompt_template: str | None = None,
        prompt_template_version: str | None = None,
        prompt_template_variables: Mapping[str, Any] | None = None,
        merge_metadata: bool = False,
    ) -> None:
        values: dict[str, object] = {}
        if session_id is not None:
            values[conventions.SESSION_ID] = _check_id("session_id", session_id)
        if user_id is not None:
            values[conventions.USER_ID] = _check_id("user_id", user_id)
        if tags is not None:
            values[conventions.TAG_TAGS] = _check_tags(tags)
        if prompt_template is not None:
            values[conventions.PROMPT_TEMPLATE] = _check_text("prompt_template", prompt_template)
        if prompt_template_version is not None:
            values[conventions.PROMPT_TEMPLATE_VERSION] = _check_text(
                "prompt_template_version", prompt_template_version
            )
        if prompt_template_variables is not None:
            values[conventions.PROMPT_TEMPLATE_VARIABLES] = _dumps(
                _check_json_mapping("prompt_template_variables", prompt_template_variables)
            )
        checked = _check_json_mapping("metadata", metadata) if metadata is not None else None
        super().__init__(values, checked, merge_metadata)


class using_session(using_attributes):
    """Put ``session_id`` (``session.id``) on every span started in the block or function.

    >>> with using_session("conv-42"):
    ...     pass
    """

    __slots__ = ()

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id=_check_id("session_id", session_id))


class using_user(using_attributes):
    """Put ``user_id`` (``user.id``) on every span started in the block or function."""

    __slots__ = ()

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id=_check_id("user_id", user_id))


class using_metadata(using_attributes):
    """Put ``metadata`` (a JSON-serialisable mapping, sent as a JSON string) on every span.

    ``merge=True`` merges it into the metadata of an enclosing helper instead of replacing it.
    """

    __slots__ = ()

    def __init__(self, metadata: Mapping[str, Any], *, merge: bool = False) -> None:
        super().__init__(metadata=_check_json_mapping("metadata", metadata), merge_metadata=merge)


class using_tags(using_attributes):
    """Put ``tags`` (a list of strings, ``tag.tags``) on every span started in the block or function."""

    __slots__ = ()

    def __init__(self, tags: Sequence[str]) -> None:
        super().__init__(tags=_check_tags(tags))


class using_prompt_template(using_attributes):
    """Put a prompt template, its version and its variables (``llm.prompt_template.*``) on the context."""

    __slots__ = ()

    def __init__(
        self, *, template: str | None = None, version: str | None = None, variables: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(
            prompt_template=template, prompt_template_version=version, prompt_template_variables=variables
        )
