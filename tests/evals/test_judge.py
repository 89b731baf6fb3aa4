"""The judge client against the local fake judge, verdict parsing, and long-session truncation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from support.fake_judge import FakeJudge
from threadline.server.evals.context import estimate_tokens, render_conversation
from threadline.server.evals.evaluators import BUILTIN, EvalContext, get_evaluator
from threadline.server.evals.judge import Judge, JudgeError
from threadline.server.evals.templates import TEMPLATES, UnparseableVerdict, parse_verdict
from threadline.server.model import Tokens, Turn
from threadline.server.query.annotations import BAD_LABELS


@pytest.fixture
def fake() -> Iterator[FakeJudge]:
    judge = FakeJudge().start()
    yield judge
    judge.stop()


def turn(i: int, text: str, answer: str = "fine", **kw: object) -> Turn:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    fields: dict[str, object] = dict(
        trace_id=f"t{i}", index=i, start_time=now, end_time=now, latency_ms=100.0, user_id="u", input=text,
        output=answer, status="ok", error=None, tokens=Tokens(), cost_usd=0.0, llm_calls=[], tool_calls=[],
        annotations={})
    fields.update(kw)
    return Turn(**fields)  # type: ignore[arg-type]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_retries_then_accounts_tokens_and_cost(fake: FakeJudge) -> None:
    fake.fail_next = 2

    async def go() -> tuple[object, Judge]:
        judge = Judge(fake.base_url, "gpt-4o-mini", "k", max_retries=3, backoff=0.01)
        try:
            return await judge.judge("sys", "Allowed labels: yes, no.\n<conversation>\nhi\n</conversation>",
                                     lambda text: parse_verdict(text, ("yes", "no"))), judge
        finally:
            await judge.aclose()

    reply, judge = run(go())  # type: ignore[misc]
    assert reply.value == ("yes", "looks fine") and reply.attempts == 3
    assert judge.usage.retries == 2 and judge.usage.requests == 1 and judge.usage.failures == 0
    assert judge.usage.completion_tokens == 10 and judge.usage.prompt_tokens > 0
    assert judge.usage.cost_usd == pytest.approx((judge.usage.prompt_tokens * 0.15 + 10 * 0.60) / 1e6)


def test_concurrency_is_limited(fake: FakeJudge) -> None:
    fake.delay = 0.05

    async def go() -> None:
        judge = Judge(fake.base_url, "m", concurrency=3, backoff=0.01)
        try:
            await asyncio.gather(*(judge.judge("s", "Allowed labels: a, b.\n", str) for _ in range(12)))
        finally:
            await judge.aclose()

    run(go())
    assert len(fake.requests) == 12 and 1 <= fake.max_in_flight <= 3


def test_gives_up_with_a_clear_error(fake: FakeJudge) -> None:
    fake.fail_always = True

    async def go() -> None:
        judge = Judge(fake.base_url, "m", max_retries=2, backoff=0.01)
        try:
            await judge.judge("s", "p", str)
        finally:
            await judge.aclose()

    with pytest.raises(JudgeError, match="after 3 attempts: HTTP 500"):
        run(go())
    assert len(fake.requests) == 3


def test_client_errors_are_not_retried(fake: FakeJudge) -> None:
    fake.fail_always, fake.fail_status = True, 401

    async def go() -> None:
        judge = Judge(fake.base_url, "m", max_retries=5, backoff=0.01)
        try:
            await judge.judge("s", "p", str)
        finally:
            await judge.aclose()

    with pytest.raises(JudgeError, match="HTTP 401"):
        run(go())
    assert len(fake.requests) == 1


def test_unreachable_judge_is_retried_then_reported() -> None:
    async def go() -> None:
        judge = Judge("http://127.0.0.1:9/v1", "m", max_retries=1, backoff=0.01, timeout=2)
        try:
            await judge.judge("s", "p", str)
        finally:
            await judge.aclose()

    with pytest.raises(JudgeError, match="connection error"):
        run(go())


def test_parse_verdict() -> None:
    assert parse_verdict('{"label": "Frustrated", "explanation": "x"}', ("frustrated", "ok")) == ("frustrated", "x")
    assert parse_verdict("Sure! ```json\n{\"label\": \"ok\"}\n```", ("frustrated", "ok")) == ("ok", None)
    assert parse_verdict("The answer is not_completed.", ("completed", "not_completed"))[0] == "not_completed"
    with pytest.raises(UnparseableVerdict):
        parse_verdict("frustrated or ok, hard to say", ("frustrated", "ok"))
    with pytest.raises(UnparseableVerdict):
        parse_verdict("no idea", ("frustrated", "ok"))


def test_every_failure_label_breaks_a_conversation() -> None:
    for name, evaluator in BUILTIN.items():
        assert evaluator.bad_label in BAD_LABELS or name == "latency"
    for template in TEMPLATES.values():
        assert set(template.scores) == set(template.rails)


def test_long_sessions_drop_oldest_whole_turns_and_say_so() -> None:
    turns = [turn(i, f"question {i} " + "word " * 200) for i in range(30)]
    rendered = render_conversation(turns, 1000)
    assert estimate_tokens(rendered.text) <= 1000
    assert rendered.omitted_turns > 0
    assert rendered.text.startswith(f"[{rendered.omitted_turns} earlier turns omitted")
    kept = 30 - rendered.omitted_turns
    for i in range(rendered.omitted_turns, 30):
        assert f"Turn {i + 1}\nUser: question {i} " + "word " * 199 + "word" in rendered.text
    assert f"question {rendered.omitted_turns - 1} " not in rendered.text
    assert kept == rendered.text.count("\nUser: ")
    assert render_conversation(turns[:2], 100_000).omitted_turns == 0


def test_a_message_bigger_than_the_budget_is_shortened_visibly() -> None:
    huge = turn(0, "x" * 50_000)
    rendered = render_conversation([huge], 500)
    assert "characters of this turn omitted" in rendered.text and rendered.shortened_messages == 1
    assert estimate_tokens(rendered.text) <= 520


def test_turn_prompts_carry_the_conversation_so_far_within_budget(fake: FakeJudge) -> None:
    turns = [turn(i, f"message {i} " + "blah " * 100) for i in range(40)] + [turn(40, "this is useless")]
    evaluator = get_evaluator("user_frustration")

    async def go() -> object:
        judge = Judge(fake.base_url, "gpt-4o-mini", backoff=0.01)
        try:
            return await evaluator.evaluate_turn(turns, 40, EvalContext(judge=judge, token_budget=800))
        finally:
            await judge.aclose()

    result = run(go())
    assert result.label == "frustrated" and result.score == 1.0  # type: ignore[attr-defined]
    assert result.metadata["omitted_turns"] > 0  # type: ignore[attr-defined]
    [prompt] = fake.prompts()
    assert estimate_tokens(prompt) <= 800
    assert "<turn_to_judge>\nTurn 41\nUser: this is useless" in prompt
    assert "Turn 40\nUser: message 39" in prompt and "earlier turns omitted" in prompt


def test_code_evaluators() -> None:
    ctx = EvalContext()
    failed = turn(0, "q", status="error", error="boom")
    slow = turn(1, "q", latency_ms=12_000.0)
    refusal = turn(2, "q", answer="I'm sorry, but I can't help with that.")
    ok = turn(3, "q", answer="Here you go.")
    turns = [failed, slow, refusal, ok]

    def label(name: str, i: int) -> object:
        return run(get_evaluator(name).evaluate_turn(turns, i, ctx)).label  # type: ignore[attr-defined]

    assert [label("errors", i) for i in range(4)] == ["error", "ok", "ok", "ok"]
    assert [label("latency", i) for i in range(4)] == ["ok", "slow", "ok", "ok"]
    assert [label("refusals", i) for i in range(4)] == ["ok", "ok", "refused", "ok"]
    derived = get_evaluator("errors").derive_session([("error", 1.0), ("ok", 0.0)])
    assert (derived.label, derived.score) == ("error", 0.5)
    custom = get_evaluator("support.fake_judge:verdict")
    assert custom.name == "verdict" and custom.annotator_kind == "CODE"
    with pytest.raises(KeyError):
        get_evaluator("no.such.module:thing")
