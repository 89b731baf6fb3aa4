"""Directions and labels: what evaluators declare and how a config judges a label or a score (pure)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from threadline.server.evals.evaluators import BUILTIN, CodeEvaluator, EvalContext
from threadline.server.evals.scales import DIRECTIONS, AnnotationConfig, LabelSpec, majority_label
from threadline.server.evals.templates import TEMPLATES
from threadline.server.model import Tokens, Turn

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a loop of its own thread (a browser test of the same session may own this thread's)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


EXPECTED_DIRECTIONS = {
    "user_frustration": "lower_is_better", "goal_completion": "higher_is_better", "helpfulness": "higher_is_better",
    "correctness": "higher_is_better", "tool_call_correctness": "higher_is_better", "errors": "lower_is_better",
    "latency": "lower_is_better", "refusals": "lower_is_better",
}


def test_every_evaluator_declares_direction_and_good_and_bad_labels() -> None:
    assert {name: ev.direction for name, ev in BUILTIN.items()} == EXPECTED_DIRECTIONS
    for name, ev in BUILTIN.items():
        specs = {s.label: s for s in ev.labels()}
        assert specs[ev.bad_label].polarity == "bad" and specs[ev.good_label].polarity == "good", name
        bad, good = specs[ev.bad_label].score, specs[ev.good_label].score
        assert bad is not None and good is not None
        # the direction agrees with the scores: the good label scores higher when higher is better
        assert (good > bad) == (ev.direction == "higher_is_better"), name
        config = ev.config()
        assert config.source == "evaluator" and config.direction == ev.direction
        assert config.verdict({ev.bad_label: 2, ev.good_label: 1}, None) == "bad"
        assert config.verdict({ev.good_label: 3}, None) == "good"
    for name, template in TEMPLATES.items():
        assert template.direction in DIRECTIONS
        assert [s.label for s in BUILTIN[name].labels()] == list(template.rails)


def _turn(output: str) -> Turn:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    return Turn(trace_id="t", trace_ids=["t"], index=0, start_time=now, end_time=now, latency_ms=1.0, user_id=None,
                input="q", output=output, status="ok", error=None, tokens=Tokens(0, 0, 0), cost_usd=0.0,
                llm_calls=[], tool_calls=[], annotations={})


@pytest.mark.parametrize(("direction", "bad_score"), [("lower_is_better", 1.0), ("higher_is_better", 0.0)])
def test_code_evaluator_scores_follow_its_direction(direction: str, bad_score: float) -> None:
    ev = CodeEvaluator("shouty", lambda turn: (turn.output or "").isupper(), bad_label="shouting",
                       direction=direction)  # type: ignore[arg-type]
    loud = _run(ev.evaluate_turn([_turn("HEY")], 0, EvalContext()))
    calm = _run(ev.evaluate_turn([_turn("hey")], 0, EvalContext()))
    assert (loud.label, loud.score) == ("shouting", bad_score)
    assert (calm.label, calm.score) == ("ok", 1.0 - bad_score)
    assert ev.config().verdict({}, loud.score) == "bad"
    assert ev.config().verdict({}, calm.score) == "good"


def test_config_verdicts_and_problems() -> None:
    rated = AnnotationConfig(name="stars", kind="continuous", direction="higher_is_better", min_score=1, max_score=5)
    assert [rated.score_polarity(s) for s in (1, 2.9, 3, 3.1, 5)] == ["bad", "bad", "neutral", "good", "good"]
    assert rated.verdict({}, None) == "neutral"
    assert rated.problem(None, 6) and rated.problem(None, 0.5) and rated.problem(None, 4) is None
    pain = AnnotationConfig(name="pain", kind="continuous", direction="lower_is_better")  # 0–1 when unset
    assert (pain.score_polarity(0.9), pain.score_polarity(0.1)) == ("bad", "good")
    tone = AnnotationConfig(name="tone", labels=(LabelSpec("warm", "good", 1.0), LabelSpec("rude", "bad", 0.0),
                                                 LabelSpec("flat")))
    assert tone.verdict({"warm": 1, "rude": 3}, 0.9) == "bad"  # the majority label, not the mean
    assert tone.verdict({"flat": 2}, 0.9) == "neutral"
    assert tone.problem("wram", None) is not None and "warm" in (tone.problem("wram", None) or "")
    assert tone.problem("warm", 123.0) is None  # categorical: the label is what is checked
    free = AnnotationConfig(name="note", kind="freeform")
    assert free.problem("anything", 1e9) is None and free.verdict({"x": 1}, 0.0) == "neutral"
    assert majority_label({"b": 2, "a": 2, "c": 1}) == "a" and majority_label({}) is None


def test_eval_list_shows_each_direction_and_bad_label() -> None:
    from click.testing import CliRunner

    from threadline.server.evals.commands import list_command

    result = CliRunner().invoke(list_command, [])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert set(lines) == set(BUILTIN)
    for name, ev in BUILTIN.items():
        word = "higher" if ev.direction == "higher_is_better" else "lower"
        assert f"{word} is better, bad: {ev.bad_label}" in lines[name]
