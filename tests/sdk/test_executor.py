"""``threadline.ThreadPoolExecutor`` runs each task in a copy of the submitter's context."""

from __future__ import annotations

import concurrent.futures

from openinference.instrumentation import get_attributes_from_context

import threadline
from threadline import using_session, using_user


def session_now(_: object = None) -> object:
    return dict(get_attributes_from_context()).get("session.id")


def test_plain_pool_threads_do_not_inherit_the_context() -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool, using_session("s"):
        assert pool.submit(session_now).result() is None


def test_submit_and_map_carry_the_submitters_context() -> None:
    with threadline.ThreadPoolExecutor(max_workers=2) as pool:
        assert isinstance(pool, concurrent.futures.ThreadPoolExecutor)
        with using_session("a"):
            fa = pool.submit(session_now)
            mapped_a = list(pool.map(session_now, range(4)))
        with using_session("b"):
            fb = pool.submit(session_now)
        fnone = pool.submit(session_now)
        assert (fa.result(), fb.result(), fnone.result()) == ("a", "b", None)
        assert mapped_a == ["a"] * 4


def test_changes_inside_a_task_stay_inside_it() -> None:
    def task() -> object:
        with using_user("inner"):
            pass
        using_user("leak").__enter__()  # never exited: must not reach the pool's next task
        return session_now()

    with threadline.ThreadPoolExecutor(max_workers=1) as pool:
        with using_session("outer"):
            assert pool.submit(task).result() == "outer"
        assert pool.submit(lambda: dict(get_attributes_from_context())).result() == {}


def test_kwargs_are_passed_through() -> None:
    def add(a: int, *, b: int) -> int:
        return a + b

    with threadline.ThreadPoolExecutor() as pool:
        assert pool.submit(add, 1, b=2).result() == 3
