"""SDK → real ``threadline serve`` (SQLite and PostgreSQL): the context groups traces into sessions."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry.sdk.trace import TracerProvider

import threadline
from sdk.api_client import ThreadlineApi
from support.server import ServerProcess
from threadline import using_attributes, using_metadata, using_session, using_tags, using_user


def turn(provider: TracerProvider, question: str, answer: str, tokens: tuple[int, int] = (0, 0)) -> None:
    """One trace: a root chain span and a child LLM span, plain OpenTelemetry only."""
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span(
        "turn", attributes={"openinference.span.kind": "CHAIN", "input.value": question, "output.value": answer}
    ), tracer.start_as_current_span(
        "llm", attributes={
            "openinference.span.kind": "LLM", "llm.model_name": "fake-model",
            "llm.token_count.prompt": tokens[0], "llm.token_count.completion": tokens[1],
            "llm.token_count.total": sum(tokens),
        },
    ):
        pass


def test_sessions_and_users_from_the_context(server: ServerProcess) -> None:
    provider = threadline.register(project_name="roundtrip", endpoint=server.otlp_http_url, set_global=False,
                                   batch=False)
    with using_session("conv-1"), using_user("alice"):
        turn(provider, "hello", "hi alice", (10, 5))
        turn(provider, "how are you?", "fine", (20, 7))
    with using_session("conv-2"):
        with using_user("bob"):
            turn(provider, "bob here", "hi bob", (1, 1))
        with using_user("carol"):
            turn(provider, "carol here", "hi carol", (2, 2))
    turn(provider, "no session", "none")
    assert provider.force_flush()
    provider.shutdown()

    api = ThreadlineApi(server.base_url)
    sessions = api.sessions("roundtrip")
    assert set(sessions) == {"conv-1", "conv-2"}
    one = sessions["conv-1"]
    assert (one["turns"], one["user_ids"], one["tokens"]) == (2, ["alice"], {"prompt": 30, "completion": 12,
                                                                               "total": 42})
    assert (one["first_input"], one["last_output"]) == ("hello", "fine")
    assert sorted(sessions["conv-2"]["user_ids"]) == ["bob", "carol"]

    detail = api.session("roundtrip", "conv-1")
    assert [(t["input"], t["output"], t["user_id"]) for t in detail["turns"]] == [
        ("hello", "hi alice", "alice"), ("how are you?", "fine", "alice"),
    ]
    assert [c["model"] for t in detail["turns"] for c in t["llm_calls"]] == ["fake-model", "fake-model"]
    assert api.user("roundtrip", "alice")["sessions"][0]["session_id"] == "conv-1"


def test_metadata_tags_and_unusual_ids_round_trip(server: ServerProcess) -> None:
    provider = threadline.register(project_name="meta proj", endpoint=server.base_url, set_global=False, batch=False)
    session_id = "thread/42 é ✓"
    with using_attributes(session_id=session_id, user_id="u@example.com", tags=["beta", "vip"],
                          metadata={"plan": "pro"}), using_metadata({"step": 2}, merge=True):
        turn(provider, "q", "a")
    provider.shutdown()

    api = ThreadlineApi(server.base_url)
    assert api.projects()["meta proj"]["sessions"] == 1
    assert api.session("meta proj", session_id)["user_ids"] == ["u@example.com"]
    spans = api.spans("meta proj", session_id=session_id)
    assert len(spans) == 2
    for span in spans:
        assert span["session_id"] == session_id
        assert span["user_id"] == "u@example.com"
        assert json.loads(span["attributes"]["metadata"]) == {"plan": "pro", "step": 2}
        assert span["attributes"]["tag.tags"] == ["beta", "vip"]


def test_a_session_set_below_the_root_groups_the_whole_trace(server: ServerProcess) -> None:
    provider = threadline.register(project_name="late", endpoint=server.otlp_http_url, set_global=False, batch=False)
    tracer = provider.get_tracer("web")
    with tracer.start_as_current_span("POST /chat", attributes={"http.method": "POST"}), using_session("late-session"):
        turn(provider, "inner question", "inner answer")
    provider.shutdown()
    detail = ThreadlineApi(server.base_url).session("late", "late-session")
    assert len(detail["turns"]) == 1
    assert detail["spans"] == 3


def test_grpc_export_and_threads_and_tasks(server: ServerProcess) -> None:
    provider = threadline.register(project_name="conc", endpoint=f"http://{server.grpc_target}", protocol="grpc",
                                   set_global=False)

    def conversation(i: int) -> None:
        for j in range(3):
            turn(provider, f"c{i} q{j}", f"c{i} a{j}", (1, 1))

    with threadline.ThreadPoolExecutor(max_workers=4) as pool:
        futures = []
        for i in range(6):
            with using_session(f"thread-{i}"), using_user(f"user-{i % 2}"):
                futures.append(pool.submit(conversation, i))
        for future in futures:
            future.result()

    async def task_conversation(i: int) -> None:
        async with using_session(f"task-{i}"), using_tags(["async"]):
            for j in range(2):
                await asyncio.sleep(0)
                turn(provider, f"t{i} q{j}", f"t{i} a{j}")

    async def main() -> None:
        await asyncio.gather(*(task_conversation(i) for i in range(5)))

    asyncio.run(main())
    assert provider.force_flush()
    provider.shutdown()

    api = ThreadlineApi(server.base_url)
    sessions = api.sessions("conc")
    assert set(sessions) == {f"thread-{i}" for i in range(6)} | {f"task-{i}" for i in range(5)}
    for i in range(6):
        s = sessions[f"thread-{i}"]
        assert (s["turns"], s["user_ids"], s["tokens"]["total"]) == (3, [f"user-{i % 2}"], 6)
        assert s["first_input"] == f"c{i} q0"
    for i in range(5):
        assert sessions[f"task-{i}"]["turns"] == 2
        assert sessions[f"task-{i}"]["user_ids"] == []
    assert api.user("conc", "user-0")["sessions"] and len(api.user("conc", "user-0")["sessions"]) == 3


@pytest.mark.parametrize("set_global", [False])
def test_project_from_environment(server: ServerProcess, monkeypatch: pytest.MonkeyPatch, set_global: bool) -> None:
    monkeypatch.setenv("THREADLINE_ENDPOINT", server.base_url)
    monkeypatch.setenv("THREADLINE_PROJECT", "env-project")
    provider = threadline.register(set_global=set_global, batch=False)
    with using_session("env-s"):
        turn(provider, "q", "a")
    provider.shutdown()
    assert set(ThreadlineApi(server.base_url).sessions("env-project")) == {"env-s"}
