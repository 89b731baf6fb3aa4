"""Full-text session search: both search plans return the same sessions, in order (both backends)."""

from __future__ import annotations

import random

import pytest

from threadline.server.query import sessions as session_queries
from threadline.server.query.sessions import SessionFilter, list_sessions
from threadline.server.store.engine import Store
from threadline.server.store.payload import encode_span
from threadline.server.store.records import SpanRecord
from threadline.server.store.write import BatchWriter

EMPTY = encode_span(None, None, None, "[]", {})  # a span payload with no text

WORDS = ["refund", "shipping", "invoice", "zeppelin", "password", "delay"]


def fill(store: Store) -> dict[str, set[str]]:
    """60 sessions × 3 turns of random words; returns which sessions contain each word."""
    rng = random.Random(5)
    contains: dict[str, set[str]] = {w: set() for w in WORDS}
    records = []
    for s in range(60):
        for turn in range(3):
            text_in = " ".join(rng.choice(WORDS[:3]) for _ in range(3))
            text_out = "zeppelin ahoy" if (s, turn) == (7, 2) else "ok " + rng.choice(WORDS[3:])
            for word in WORDS:
                if word in f"{text_in} {text_out}".split():
                    contains[word].add(f"s{s:02d}")
            records.append(SpanRecord(
                project="p", trace_id=f"{s:02d}{turn:02d}".ljust(32, "0"), span_id="1" * 16, parent_span_id=None,
                name="turn", kind="CHAIN", start_ns=1000 * (s * 3 + turn), end_ns=1000 * (s * 3 + turn) + 500,
                status="OK", status_message=None, session_id=f"s{s:02d}", user_id=None, input=text_in,
                output=text_out, model=None, is_llm=False, prompt_tokens=0, completion_tokens=0, total_tokens=0,
                cost=0.0, error=None, payload=EMPTY, turn_key=None,
            ))
    with store.write() as tx:
        BatchWriter(store.dialect).write(tx, records, now_ns=1)
    return contains


def pages(store: Store, q: str, sort: str) -> list[str]:
    found: list[str] = []
    cursor = None
    with store.read() as conn:
        while True:
            page = list_sessions(conn, "p", SessionFilter(q=q), sort=sort, limit=7, cursor=cursor)
            found.extend(s.session_id for s in page.data)
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor


@pytest.mark.parametrize("threshold", [0, 10**9], ids=["probe-sessions-plan", "collect-hits-plan"])
def test_both_search_plans_agree_with_the_data(store: Store, monkeypatch: pytest.MonkeyPatch, threshold: int) -> None:
    contains = fill(store)
    monkeypatch.setattr(session_queries, "COMMON_SEARCH_HITS", threshold)
    for word in WORDS:
        newest_first = pages(store, word, "start_time")
        assert newest_first == sorted(contains[word], reverse=True), word
    assert pages(store, "zeppelin ahoy", "turns") == ["s07"]
    assert pages(store, "refu", "start_time") == sorted(contains["refund"], reverse=True)  # prefix


@pytest.mark.parametrize("query", ["order_1234", "ORDER-1234", "order 123", "UNICODE réfund", "snake_case_na"])
def test_words_joined_by_punctuation_are_found_as_the_tokenizer_splits_them(store: Store, query: str) -> None:
    """The index knows words, not where they stand: a query's words are the tokenizer's words
    (``_`` and ``-`` separate), each required, the last a prefix — never a phrase."""
    texts = {"a": "please check order_1234 and the unicode réfund", "b": "order 999 shipped", "c": "snake_case_name"}
    records = [SpanRecord(
        project="p", trace_id=f"{i:032x}", span_id="1" * 16, parent_span_id=None, name="turn", kind="CHAIN",
        start_ns=1000 * i, end_ns=1000 * i + 5, status="OK", status_message=None, session_id=sid, user_id=None,
        input=text, output=None, model=None, is_llm=False, prompt_tokens=0, completion_tokens=0, total_tokens=0,
        cost=0.0, error=None, payload=EMPTY, turn_key=None) for i, (sid, text) in enumerate(sorted(texts.items()), 1)]
    with store.write() as tx:
        BatchWriter(store.dialect).write(tx, records, now_ns=1)
    expected = {"order_1234": {"a"}, "ORDER-1234": {"a"}, "order 123": {"a"}, "UNICODE réfund": {"a"},
                "snake_case_na": {"c"}}[query]
    with store.read() as conn:
        found = {s.session_id for s in list_sessions(conn, "p", SessionFilter(q=query), limit=10).data}
    assert found == expected
