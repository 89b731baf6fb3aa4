"""The ``using_*`` helpers: values, validation, nesting, reuse and every decorated kind of callable."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

import pytest
from openinference.instrumentation import get_attributes_from_context
from opentelemetry import context as otel_context

from threadline import (
    using_attributes,
    using_metadata,
    using_prompt_template,
    using_session,
    using_tags,
    using_user,
)


def current() -> dict[str, Any]:
    """What OpenInference instrumentors read from the context right now."""
    return dict(get_attributes_from_context())


# --- values as OpenInference reads them -------------------------------------------------------
def test_every_helper_sets_the_openinference_context_keys() -> None:
    with (
        using_session("s-1"),
        using_user("u-1"),
        using_metadata({"plan": "pro", "n": 3}),
        using_tags(["a", "b"]),
        using_prompt_template(template="Hi {name}", version="v2", variables={"name": "Ann"}),
    ):
        attrs = current()
    assert attrs["session.id"] == "s-1"
    assert attrs["user.id"] == "u-1"
    assert json.loads(attrs["metadata"]) == {"plan": "pro", "n": 3}
    assert list(attrs["tag.tags"]) == ["a", "b"]
    assert attrs["llm.prompt_template.template"] == "Hi {name}"
    assert attrs["llm.prompt_template.version"] == "v2"
    assert json.loads(attrs["llm.prompt_template.variables"]) == {"name": "Ann"}
    assert current() == {}


def test_using_attributes_sets_everything_at_once() -> None:
    with using_attributes(session_id="s", user_id="u", metadata={"k": "é"}, tags=["t"], prompt_template="p",
                          prompt_template_version="1", prompt_template_variables={"x": 1}):
        attrs = current()
    assert attrs == {
        "session.id": "s", "user.id": "u", "metadata": '{"k": "é"}', "tag.tags": ["t"],
        "llm.prompt_template.template": "p", "llm.prompt_template.version": "1",
        "llm.prompt_template.variables": '{"x": 1}',
    }


# --- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "   ", "\n"])
def test_empty_ids_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="session_id"):
        using_session(bad)
    with pytest.raises(ValueError, match="user_id"):
        using_user(bad)
    with pytest.raises(ValueError, match="session_id"):
        using_attributes(session_id=bad)


@pytest.mark.parametrize("bad", [42, None, b"bytes", ["s"], 4.2])
def test_non_string_ids_are_rejected(bad: Any) -> None:
    with pytest.raises(TypeError, match="session_id"):
        using_session(bad)
    with pytest.raises(TypeError, match="user_id"):
        using_user(bad)


@pytest.mark.parametrize("bad", ["one-tag", b"x", [1, 2], ["ok", None], {"a": 1}, 7])
def test_tags_must_be_a_list_of_strings(bad: Any) -> None:
    with pytest.raises(TypeError, match="tags"):
        using_tags(bad)


@pytest.mark.parametrize("bad", [["a"], "x", {1: "int key"}, {"obj": object()}, {"nan": float("nan")}, {"s": {1, 2}}])
def test_metadata_must_be_a_json_mapping(bad: Any) -> None:
    with pytest.raises(TypeError, match="metadata"):
        using_metadata(bad)


def test_prompt_template_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="prompt_template_variables"):
        using_prompt_template(template="t", variables={"x": object()})
    with pytest.raises(TypeError, match="prompt_template"):
        using_prompt_template(template=3)  # type: ignore[arg-type]


def test_decorating_a_non_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="callable"):
        using_session("s")(42)  # type: ignore[type-var]


# --- nesting ----------------------------------------------------------------------------------
def test_nesting_restores_the_outer_values() -> None:
    with using_session("outer"):
        with using_session("inner"):
            assert current()["session.id"] == "inner"
        assert current()["session.id"] == "outer"
    assert "session.id" not in current()


def test_an_inner_helper_overrides_only_what_it_sets() -> None:
    with using_attributes(session_id="s", user_id="u", tags=["a"], metadata={"k": 1}):
        with using_user("u2"):
            attrs = current()
            assert attrs["user.id"] == "u2"
            assert attrs["session.id"] == "s"
            assert attrs["tag.tags"] == ["a"]
            assert json.loads(attrs["metadata"]) == {"k": 1}
        with using_attributes(tags=["b"]):
            assert current()["tag.tags"] == ["b"]
            assert current()["user.id"] == "u"


def test_metadata_replaces_by_default_and_merges_on_request() -> None:
    with using_metadata({"a": 1, "b": 1}):
        with using_metadata({"b": 2}):
            assert json.loads(current()["metadata"]) == {"b": 2}
        with using_metadata({"b": 2, "c": 3}, merge=True):
            assert json.loads(current()["metadata"]) == {"a": 1, "b": 2, "c": 3}
        with using_attributes(metadata={"d": 4}, merge_metadata=True):
            assert json.loads(current()["metadata"]) == {"a": 1, "b": 1, "d": 4}
        assert json.loads(current()["metadata"]) == {"a": 1, "b": 1}
    with using_metadata({"only": True}, merge=True):
        assert json.loads(current()["metadata"]) == {"only": True}


def test_exceptions_inside_the_block_still_detach() -> None:
    with pytest.raises(RuntimeError), using_session("boom"):
        raise RuntimeError("x")
    assert current() == {}


def test_the_helpers_leave_other_context_values_alone() -> None:
    token = otel_context.attach(otel_context.set_value("unrelated", 1))
    try:
        with using_session("s"):
            assert otel_context.get_value("unrelated") == 1
    finally:
        otel_context.detach(token)


# --- one instance, many entries ------------------------------------------------------------------
def test_a_reused_instance_nests_and_recurses() -> None:
    s1 = using_session("s1")
    s2 = using_session("s2")
    seen: list[str] = []

    def recurse(depth: int) -> None:
        helper = s1 if depth % 2 else s2
        with helper:
            seen.append(current()["session.id"])
            if depth:
                recurse(depth - 1)
            seen.append(current()["session.id"])

    recurse(5)
    assert seen == ["s1", "s2", "s1", "s2", "s1", "s2", "s2", "s1", "s2", "s1", "s2", "s1"]
    assert current() == {}

    with s1, s1:
        assert current()["session.id"] == "s1"
    assert current() == {}


def test_a_shared_instance_across_threads_never_leaks() -> None:
    shared = using_session("shared")
    barrier = threading.Barrier(8)
    errors: list[str] = []

    def work(i: int) -> None:
        with using_user(f"user-{i}"):
            barrier.wait()
            for _ in range(200):
                with shared:
                    attrs = current()
                    if attrs.get("session.id") != "shared" or attrs.get("user.id") != f"user-{i}":
                        errors.append(repr(attrs))
                if current().get("session.id") is not None:
                    errors.append("leaked session")
        if current():
            errors.append(f"leaked {current()}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert current() == {}


def test_a_shared_instance_across_asyncio_tasks_never_leaks() -> None:
    shared = using_session("shared")

    async def task(i: int) -> tuple[str, str | None]:
        async with shared, using_user(f"u{i}"):
            await asyncio.sleep(0)
            inside = current()["user.id"]
            await asyncio.sleep(0)
            assert current()["session.id"] == "shared"
        return inside, current().get("session.id")

    async def main() -> list[tuple[str, str | None]]:
        return await asyncio.gather(*(task(i) for i in range(50)))

    results = asyncio.run(main())
    assert results == [(f"u{i}", None) for i in range(50)]
    assert current() == {}


def test_tasks_created_inside_a_block_inherit_it() -> None:
    async def child() -> str:
        await asyncio.sleep(0)
        return str(current()["session.id"])

    async def main() -> str:
        async with using_session("parent"):
            task = asyncio.create_task(child())
        return await task

    assert asyncio.run(main()) == "parent"


# --- decorators -------------------------------------------------------------------------------
def test_decorated_plain_function() -> None:
    @using_session("deco")
    def f(x: int) -> tuple[int, str]:
        return x, current()["session.id"]

    assert f(1) == (1, "deco")
    assert f.__name__ == "f"
    assert current() == {}


def test_decorated_function_reraises_and_detaches() -> None:
    @using_user("u")
    def f() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        f()
    assert current() == {}


def test_decorated_recursive_function_restores_each_level() -> None:
    @using_tags(["rec"])
    def f(n: int) -> int:
        assert current()["tag.tags"] == ["rec"]
        return 0 if n == 0 else 1 + f(n - 1)

    assert f(20) == 20
    assert current() == {}


def test_decorated_coroutine_function() -> None:
    @using_session("async")
    async def f() -> str:
        await asyncio.sleep(0)
        return str(current()["session.id"])

    async def main() -> list[str]:
        return await asyncio.gather(*(f() for _ in range(5)))

    assert asyncio.run(main()) == ["async"] * 5
    assert current() == {}


def test_decorated_generator_keeps_the_context_for_every_step() -> None:
    @using_session("gen")
    def numbers(n: int) -> Iterator[tuple[int, str | None]]:
        for i in range(n):
            yield i, current().get("session.id")
        return

    gen = numbers(3)
    seen = []
    for item in gen:
        seen.append(item)
        assert current().get("session.id") is None  # the caller's context between steps
    assert seen == [(0, "gen"), (1, "gen"), (2, "gen")]


def test_decorated_generator_send_throw_close_and_return_value() -> None:
    closed: list[str | None] = []

    @using_user("g")
    def echo() -> Generator[str, str, None]:
        received = yield "ready"
        try:
            while True:
                received = yield f"{received}:{current()['user.id']}"
        except ValueError:
            yield "caught:" + str(current()["user.id"])
        finally:
            closed.append(current().get("user.id"))

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("a") == "a:g"
    assert gen.throw(ValueError("v")) == "caught:g"
    gen.close()
    assert closed == ["g"]
    assert current() == {}

    @using_user("g")
    def returns() -> Generator[int, None, int]:
        yield 1
        return 99

    def outer() -> Iterator[int]:
        value = yield from returns()
        yield value

    assert list(outer()) == [1, 99]


def test_decorated_async_generator_keeps_the_context_for_every_step() -> None:
    @using_attributes(session_id="agen", user_id="u")
    async def stream(n: int) -> AsyncIterator[str]:
        for i in range(n):
            await asyncio.sleep(0)
            yield f"{i}:{current()['session.id']}:{current()['user.id']}"

    async def main() -> tuple[list[str], dict[str, Any]]:
        items = [item async for item in stream(3)]
        return items, current()

    items, after = asyncio.run(main())
    assert items == ["0:agen:u", "1:agen:u", "2:agen:u"]
    assert after == {}


def test_decorated_async_generator_athrow_and_aclose() -> None:
    finalised: list[str | None] = []

    @using_session("ag")
    async def gen() -> AsyncGenerator[str, None]:
        try:
            while True:
                try:
                    yield str(current()["session.id"])
                except KeyError:
                    yield "handled:" + str(current()["session.id"])
        finally:
            finalised.append(current().get("session.id"))

    async def main() -> list[str]:
        g = gen()
        out = [await g.__anext__(), await g.athrow(KeyError("k"))]
        await g.aclose()
        return out

    assert asyncio.run(main()) == ["ag", "handled:ag"]
    assert finalised == ["ag"]


def test_decorated_callable_with_async_call() -> None:
    class Agent:
        async def __call__(self, question: str) -> str:
            await asyncio.sleep(0)
            return f"{question}:{current()['session.id']}"

    wrapped = using_session("callable")(Agent())
    assert asyncio.iscoroutinefunction(wrapped)
    assert asyncio.run(wrapped("q")) == "q:callable"
    assert current() == {}


def test_decorated_methods() -> None:
    class Bot:
        @using_user("method-user")
        def reply(self) -> str:
            return str(current()["user.id"])

        @using_user("async-method-user")
        async def areply(self) -> str:
            return str(current()["user.id"])

    assert Bot().reply() == "method-user"
    assert asyncio.run(Bot().areply()) == "async-method-user"


def test_the_same_decorator_instance_used_concurrently_from_threads() -> None:
    helper = using_session("threaded")
    results: list[str | None] = []

    @helper
    def work() -> str:
        return str(current()["session.id"])

    threads = [threading.Thread(target=lambda: results.append(work())) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["threaded"] * 16


def test_exit_in_a_foreign_thread_is_harmless(caplog: pytest.LogCaptureFixture) -> None:
    helper = using_session("x")
    helper.__enter__()
    t = threading.Thread(target=helper.__exit__, args=(None, None, None))
    t.start()
    t.join()
    assert "not entered" in caplog.text
    helper.__exit__(None, None, None)
    assert current() == {}


def test_repr_names_the_values() -> None:
    assert "s-9" in repr(using_session("s-9"))


def test_decorated_class_is_called_like_a_plain_callable() -> None:
    @using_session("cls")
    class Reply:
        def __init__(self) -> None:
            self.session = current()["session.id"]

        async def __call__(self) -> str:
            return "unused"

    assert Reply().session == "cls"


def test_decorated_partial_of_a_coroutine_function() -> None:
    import functools

    async def f(prefix: str) -> str:
        return prefix + str(current()["session.id"])

    wrapped = using_session("partial")(functools.partial(f, "p:"))
    assert asyncio.run(wrapped()) == "p:partial"


def test_interoperates_with_openinference_helpers() -> None:
    from openinference.instrumentation import using_metadata as oi_using_metadata
    from openinference.instrumentation import using_session as oi_using_session

    with oi_using_session("oi-session"), using_user("tl-user"):
        assert current() == {"session.id": "oi-session", "user.id": "tl-user"}
        with using_session("tl-session"):
            assert current()["session.id"] == "tl-session"
        assert current()["session.id"] == "oi-session"
    with oi_using_metadata({"a": 1}), using_metadata({"b": 2}, merge=True):
        assert json.loads(current()["metadata"]) == {"a": 1, "b": 2}
    assert current() == {}
