"""Annotation configs and persisted evaluation runs on the store (SQLite and PostgreSQL).

Configs: replace, read back, delete, evaluator defaults under stored ones, hostile names. Runs: an
API run is recorded, finishes with its report, and a new store + job registry (a restarted server)
still reads it; a run whose server stopped mid-way reads ``interrupted``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from threadline.server.evals.configs import effective_config, effective_configs
from threadline.server.evals.evaluators import BUILTIN
from threadline.server.evals.jobs import EvalJobs
from threadline.server.evals.runner import RunOptions
from threadline.server.query.annotation_configs import get_annotation_config, list_annotation_configs
from threadline.server.settings import Settings
from threadline.server.store import schema as t
from threadline.server.store.annotation_configs import delete_annotation_config, put_annotation_config
from threadline.server.store.engine import Store, open_store
from threadline.server.store.eval_runs import create_eval_run, get_eval_run, update_eval_run
from threadline.server.store.payload import encode_span
from threadline.server.store.records import SpanRecord
from threadline.server.store.write import BatchWriter

EMPTY = encode_span(None, None, None, "[]", {})  # a span payload with no text

S = 1_000_000_000
HOSTILE = ["a/b c", "ünï ☃", "<script>alert(1)</script>", "' OR 1=1 --", "%2F..%2F", "x" * 200]


def _turn(session: str, trace: str, status: str = "OK") -> SpanRecord:
    return SpanRecord(
        project="p", trace_id=trace.ljust(32, "0"), span_id="a" * 16, parent_span_id=None, name="turn",
        kind="AGENT", start_ns=1000 * S, end_ns=1001 * S, status=status, status_message=None, session_id=session,
        user_id="u", input=f"hi {trace}", output="hello", model=None, is_llm=False, prompt_tokens=0,
        completion_tokens=0, total_tokens=0, cost=0.0, error="boom" if status == "ERROR" else None,
        payload=EMPTY, turn_key=None)


def _project(store: Store) -> int:
    with store.write() as tx:
        BatchWriter(store.dialect).write(tx, [_turn("s1", "1"), _turn("s1", "2", "ERROR"), _turn("s2", "3")],
                                         now_ns=1001 * S)
        return int(tx.execute(select(t.projects.c.id).where(t.projects.c.name == "p")).scalar_one())


def test_configs_round_trip_and_override_evaluator_defaults(store: Store) -> None:
    pid = _project(store)
    with store.read() as conn:
        default = effective_config(conn, pid, "user_frustration")
        assert default is not None and default.source == "evaluator"
        assert default.direction == "lower_is_better"
        assert {s.label: s.polarity for s in default.labels} == {"frustrated": "bad", "ok": "good"}
        assert effective_config(conn, pid, "tone") is None
    labels: list[dict[str, Any]] = [{"label": "calm", "polarity": "good", "score": 0.0},
                                    {"label": "angry", "polarity": "bad", "score": 1.0},
                                    {"label": "meh", "polarity": "neutral", "score": None}]
    with store.write() as tx:
        put_annotation_config(tx, pid, "user_frustration", kind="categorical", labels=labels,
                              direction="lower_is_better", min_score=0.0, max_score=1.0, description="mood",
                              now_ns=5 * S)
        put_annotation_config(tx, pid, "quality", kind="continuous", labels=[], direction="higher_is_better",
                              min_score=1.0, max_score=5.0, description="", now_ns=5 * S)
    with store.read() as conn:
        stored = get_annotation_config(conn, pid, "user_frustration")
        assert stored is not None and stored.source == "project" and stored.description == "mood"
        assert [(s.label, s.polarity, s.score) for s in stored.labels] == [
            ("calm", "good", 0.0), ("angry", "bad", 1.0), ("meh", "neutral", None)]
        every = effective_configs(conn, pid)
        assert every["user_frustration"] == stored  # the stored config wins over the evaluator's
        assert set(every) == set(BUILTIN) | {"quality"}
        quality = every["quality"]
        assert (quality.kind, quality.min_score, quality.max_score) == ("continuous", 1.0, 5.0)
        assert quality.score_polarity(4.5) == "good" and quality.score_polarity(1.5) == "bad"
    # replacing keeps one row; deleting brings the evaluator default back
    with store.write() as tx:
        put_annotation_config(tx, pid, "quality", kind="freeform", labels=[], direction="higher_is_better",
                              min_score=None, max_score=None, description="notes", now_ns=6 * S)
        assert delete_annotation_config(tx, pid, "user_frustration")
        assert not delete_annotation_config(tx, pid, "user_frustration")
        assert not delete_annotation_config(tx, pid + 1, "quality")  # another project's name is untouched
    with store.read() as conn:
        assert [c.name for c in list_annotation_configs(conn, pid)] == ["quality"]
        assert list_annotation_configs(conn, pid)[0].kind == "freeform"
        back = effective_config(conn, pid, "user_frustration")
        assert back is not None and back.source == "evaluator"


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_config_names_are_data(store: Store, name: str) -> None:
    pid = _project(store)
    with store.write() as tx:
        put_annotation_config(tx, pid, name, kind="categorical", labels=[{"label": name, "polarity": "bad"}],
                              direction="higher_is_better", min_score=None, max_score=None, description=name,
                              now_ns=S)
    with store.read() as conn:
        found = get_annotation_config(conn, pid, name)
        assert found is not None and found.name == name and found.labels[0].label == name
        assert found.label_polarity(name) == "bad"
        assert [c.name for c in list_annotation_configs(conn, pid)] == [name]


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


def test_api_run_is_stored_and_read_after_a_restart(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url)
    try:
        pid = _project(store)
        jobs = EvalJobs(_settings(tmp_path), store)
        run_id = jobs.start(pid, RunOptions(project="p", evaluators=["errors"], session_ids=["s1", "s2"],
                                            builtin_only=True))
        assert jobs.wait(run_id, timeout=60)
        first = jobs.get("p", pid, run_id)
        assert first is not None and first["state"] == "done", first
        assert (first["done"], first["total"]) == (2, 2)
        assert first["report"]["session_annotations"] == 2 and first["report"]["turn_annotations"] == 3
        assert first["filters"]["session_ids"] == ["s1", "s2"] and first["evaluators"] == ["errors"]
        assert first["started_at"] is not None and first["finished_at"] >= first["started_at"]
    finally:
        store.dispose()
    restarted = open_store(db_url)
    try:
        again = EvalJobs(_settings(tmp_path), restarted).get("p", pid, run_id)
        assert again == first
        assert EvalJobs(_settings(tmp_path), restarted).get("p", pid + 1, run_id) is None  # another project
    finally:
        restarted.dispose()


def test_a_run_whose_server_stopped_reads_interrupted(store: Store, tmp_path: Path) -> None:
    pid = _project(store)
    before = EvalJobs(_settings(tmp_path), store)
    with store.write() as tx:  # a run in progress in a server process that then stopped
        stopped = create_eval_run(tx, pid, ["errors"], {}, before.runner, time.time_ns())
        update_eval_run(tx, stopped, status="running", started_ns=time.time_ns(), done=1, total=4)
        # and one run of another live process on this host (this test's parent), beating recently
        alive = create_eval_run(tx, pid, ["errors"], {}, f"{before.host}:{os.getppid()}:other", time.time_ns())
        # and one of another host whose heartbeat stopped long ago
        stale = create_eval_run(tx, pid, ["errors"], {}, "elsewhere:1:x", time.time_ns() - 3600 * S)
    after = EvalJobs(_settings(tmp_path), store)  # the restarted server
    view = after.get("p", pid, stopped)
    assert view is not None and view["state"] == "interrupted" and (view["done"], view["total"]) == (1, 4)
    assert view["error"] and view["finished_at"] is not None
    alive_view = after.get("p", pid, alive)
    assert alive_view is not None and alive_view["state"] == "queued"
    stale_view = after.get("p", pid, stale)
    assert stale_view is not None and stale_view["state"] == "interrupted"
    with store.read() as conn:  # stored, not only shown
        row = get_eval_run(conn, pid, stopped)
        assert row is not None and row.status == "interrupted"
    with store.write() as tx:  # a finished run is never changed again
        assert not update_eval_run(tx, stopped, status="running")
