"""Evaluations in the UI: rank by a score column, where a conversation breaks, score trends, annotate by hand.

Annotations are made through the real REST API (and, for hand annotation, through the page's form),
against the real server of ``conftest.ui``; every page is guarded (no dialog, no console error).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from .conftest import Guard, UiServer
from .traffic import P_IMG, P_SCRIPT, P_SVG, P_TD, SECOND, SessionSpec, TurnSpec, now_ns, send

pytestmark = pytest.mark.browser

PROJECT = "evals"
NAME = "user_frustration"
# Session-level scores of NAME: ev-3 has two annotators (0.4 and 0.6 → mean 0.5), ev-4 none.
SESSION_SCORES = {"ev-1": [0.2], "ev-2": [0.9], "ev-3": [0.4, 0.6]}
USER_OF = {"ev-1": "ana", "ev-2": "bo", "ev-3": "cy", "ev-4": "di"}
DI_OWN = 0.7  # a user annotation of NAME on di, who has no scored session
HELPFULNESS = [1.0, 0.5, 0.0, 0.25]  # per turn of ev-4


@dataclass
class EvalData:
    trace_ids: dict[str, list[str]]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _post(http: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    """POST annotations, waiting (bounded) until the exported turns are stored and visible."""
    deadline = time.monotonic() + 20
    while True:
        response = http.post(f"/v1/projects/{PROJECT}/annotations", json=body)
        if response.status_code != 404 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@pytest.fixture(scope="module")
def evals(ui: UiServer) -> EvalData:
    start = now_ns() - 600 * SECOND
    turns = {"ev-1": 3, "ev-2": 2, "ev-3": 1, "ev-4": 4}
    specs = [
        SessionSpec(sid, [TurnSpec(USER_OF[sid], f"{sid} question {n + 1}", f"{sid} answer {n + 1}",
                                   start + (i * 10 + n) * SECOND,
                                   fail=(sid == "ev-4" and n == 2) or (sid == "ev-2" and n == 1))
                          for n in range(count)])
        for i, (sid, count) in enumerate(turns.items())
    ]
    ids = dict(zip(turns, send(ui.endpoint, PROJECT, specs), strict=True))
    notes: list[dict[str, Any]] = []
    for sid, scores in SESSION_SCORES.items():
        for k, value in enumerate(scores):
            notes.append({"target_kind": "session", "target_id": sid, "name": NAME, "score": value,
                          "annotator_kind": "LLM", "identifier": f"judge-{k}"})
    notes.append({"target_kind": "user", "target_id": "di", "name": NAME, "score": DI_OWN, "annotator_kind": "HUMAN"})
    for n, value in enumerate(HELPFULNESS):
        notes.append({"target_kind": "trace", "target_id": ids["ev-4"][n], "name": "helpfulness", "score": value,
                      "annotator_kind": "LLM"})
    # ev-4 breaks at turn 2 (frustrated) although turn 3 is the one that errors.
    notes.append({"target_kind": "trace", "target_id": ids["ev-4"][1], "name": NAME, "label": "frustrated",
                  "score": 1.0, "annotator_kind": "LLM", "explanation": f"user repeats {P_SCRIPT} {P_IMG}"})
    notes.append({"target_kind": "trace", "target_id": ids["ev-4"][0], "name": P_SVG, "label": P_TD, "score": 0.3,
                  "annotator_kind": "HUMAN", "explanation": P_IMG})
    with httpx.Client(base_url=ui.base_url, timeout=30) as http:
        response = _post(http, {"data": notes})
        assert response.status_code == 200, response.text
    return EvalData(ids)


def _row_keys(page: Page, table: str) -> list[str]:
    return [k or "" for k in page.locator(f"{table} tbody tr").evaluate_all("rows => rows.map(r => r.dataset.key)")]


def _column(page: Page, table: str, sort: str) -> list[str]:
    """The texts of the column whose header sorts by ``sort``."""
    return list(page.locator(table).evaluate(
        """(t, sort) => {
            const ths = Array.from(t.tHead.rows[t.tHead.rows.length - 1].cells);  // below the group row
            const i = ths.findIndex(th => th.querySelector(`a[data-sort="${sort}"]`));
            return Array.from(t.tBodies[0].rows).map(r => r.cells[i].textContent.trim());
        }""", sort))


def test_sessions_ranked_by_score_column(page: Page, ui: UiServer, evals: EvalData) -> None:
    means = {sid: _mean(v) for sid, v in SESSION_SCORES.items()}
    worst_first = sorted(means, key=lambda s: -means[s])
    page.goto(ui.url(f"/projects/{PROJECT}/sessions"))
    page.locator(f'#sessions-table th a[data-sort="score:{NAME}"]').click()
    page.wait_for_url(f"**sort=score%3A{NAME}**")
    assert "order=desc" in page.url
    assert _row_keys(page, "#sessions-table") == worst_first  # ev-4 has no session score: left out
    expect(page.locator(".ranking-note")).to_contain_text("highest first")
    assert [float(c) for c in _column(page, "#sessions-table", f"score:{NAME}")] == [
        round(means[s], 2) for s in worst_first]

    page.locator(f'#sessions-table th a[data-sort="score:{NAME}"]').click()
    page.wait_for_url("**order=asc**")
    assert _row_keys(page, "#sessions-table") == worst_first[::-1]

    # min/max score filter on the mean, from the filter form.
    page.locator("input[name=min_score]").fill("0.3")
    page.locator("form[data-filters] button[type=submit]").click()
    page.wait_for_url("**min_score=0.3**")
    assert _row_keys(page, "#sessions-table") == [s for s in worst_first[::-1] if means[s] >= 0.3]

    # keyset pagination with the ranking's cursor
    page.goto(ui.url(f"/projects/{PROJECT}/sessions?sort=score:{NAME}&order=desc&limit=2"))
    assert _row_keys(page, "#sessions-table") == worst_first[:2]
    page.locator("a[rel=next]").click()
    page.wait_for_url("**cursor=**")
    assert _row_keys(page, "#sessions-table") == worst_first[2:]

    # every filter of the list applies to the ranking too
    page.goto(ui.url(f"/projects/{PROJECT}/sessions?sort=score:{NAME}&has_error=true"))
    assert _row_keys(page, "#sessions-table") == ["ev-2"]  # the only scored session with a failed turn
    page.goto(ui.url(f"/projects/{PROJECT}/sessions?sort=score:{NAME}&order=asc&min_turns=2"))
    assert _row_keys(page, "#sessions-table") == ["ev-1", "ev-2"]
    page.goto(ui.url(f"/projects/{PROJECT}/sessions?sort=score:{NAME}&user_id_contains=cy"))
    assert _row_keys(page, "#sessions-table") == ["ev-3"]
    expect(page.locator(".ranking-note")).to_contain_text("the filters apply")


def test_bad_score_bounds_are_a_400_page(ui: UiServer, http: httpx.Client, evals: EvalData) -> None:
    for query, word in ((f"sort=score:{NAME}&min_score=abc", "min_score"), ("min_score=0.5", "score sort"),
                        (f"sort=score:{NAME}&min_score=0.8&max_score=0.2", "max_score")):
        for path in ("sessions", "users"):
            response = http.get(f"/projects/{PROJECT}/{path}?{query}")
            assert response.status_code == 400, (path, query)
            assert word in response.text


def test_users_ranked_by_score_column(page: Page, ui: UiServer, evals: EvalData) -> None:
    means = {USER_OF[sid]: _mean(v) for sid, v in SESSION_SCORES.items()} | {"di": DI_OWN}
    page.goto(ui.url(f"/projects/{PROJECT}/users"))
    page.locator(f'#users-table th a[data-sort="score:{NAME}"]').click()
    page.wait_for_url(f"**sort=score%3A{NAME}**")
    assert _row_keys(page, "#users-table") == sorted(means, key=lambda u: -means[u])
    page.goto(ui.url(f"/projects/{PROJECT}/users?sort=score:{NAME}&order=asc&max_score=0.6"))
    assert _row_keys(page, "#users-table") == [u for u in sorted(means, key=lambda u: means[u]) if means[u] <= 0.6]


def test_broken_turn_marked_and_trend_has_a_point_per_turn(page: Page, ui: UiServer, evals: EvalData) -> None:
    page.goto(ui.url(f"/projects/{PROJECT}/sessions/ev-4"))
    expect(page.locator("#turn-2")).to_have_class("turn broken")
    expect(page.locator("#turn-2 .badge.breaks")).to_have_text("conversation breaks here")
    expect(page.locator("#turn-2 .breaks-reason")).to_contain_text(f"{NAME}: frustrated")
    expect(page.locator("#turn-2 .breaks-reason")).to_contain_text(P_SCRIPT)  # the explanation, as text
    expect(page.locator(".turn.broken")).to_have_count(1)  # turn 3 errors too, but later
    expect(page.locator("#turn-3")).to_have_class("turn failed")
    header_link = page.locator("#session-header .breakdown a")
    expect(header_link).to_have_attribute("href", "#turn-2")
    header_link.click()
    page.wait_for_url("**#turn-2")

    trend = page.locator('#session-header .trend[data-trend="helpfulness"] circle')
    expect(trend).to_have_count(len(HELPFULNESS))
    scores = trend.evaluate_all("cs => cs.map(c => c.dataset.score)")
    assert [float(s) for s in scores] == HELPFULNESS
    assert trend.evaluate_all("cs => cs.map(c => c.classList.contains('broken'))") == [False, True, False, False]
    # higher score → higher point (smaller y)
    ys = [float(y) for y in trend.evaluate_all("cs => cs.map(c => c.getAttribute('cy'))")]
    assert ys[0] < ys[1] < ys[3] < ys[2]
    # an annotation on one turn only still has one point per turn (the others hollow)
    expect(page.locator(f'#session-header .trend[data-trend="{NAME}"] circle')).to_have_count(4)
    expect(page.locator(f'#session-header .trend[data-trend="{NAME}"] circle.none')).to_have_count(3)
    expect(page.locator("#session-header .trend figcaption", has_text=P_SVG)).to_have_count(1)

    # a session whose first failure is an error: the reason says so
    page.goto(ui.url(f"/projects/{PROJECT}/sessions/ev-2"))
    expect(page.locator(".turn.broken")).to_have_count(1)
    expect(page.locator("#turn-2 .breaks-reason")).to_contain_text("error")
    page.goto(ui.url(f"/projects/{PROJECT}/sessions/ev-1"))
    expect(page.locator(".badge.breaks")).to_have_count(0)
    assert page.locator("img, [onerror], svg[onload]").count() == 0


def _open_form(page: Page, where: str) -> Any:
    """Open the "Annotate" disclosure of ``where`` and wait for its names (from the annotation configs)."""
    page.locator(f"{where} details.annotate summary").click()
    form = page.locator(f"{where} form[data-annotate]")
    expect(form.locator("select[name=name] option", has_text="New annotation name")).to_have_count(1)
    return form


def test_annotate_form_new_name_creates_config_and_annotation(page: Page, ui: UiServer, http: httpx.Client,
                                                               evals: EvalData) -> None:
    trace_id = evals.trace_ids["ev-1"][0]
    page.goto(ui.url(f"/projects/{PROJECT}/sessions/ev-1"))
    form = _open_form(page, "#turn-1")
    # no free-text name field until the explicit "new annotation name" path is chosen
    expect(form.locator("input[name=new_name]")).to_be_hidden()
    form.locator("select[name=name]").select_option(label="New annotation name…")
    form.get_by_label("Name", exact=True).last.fill("tone")
    form.get_by_label("Good labels").fill("warm, kind")
    form.get_by_label("Bad labels").fill("cold")
    form.locator("input[name=label_text]").fill("warm")
    form.get_by_label("Score", exact=True).fill("0.8")
    form.get_by_label("Explanation").fill("kind reply")
    with page.expect_navigation():
        form.get_by_role("button", name="Save").click()
    expect(page.locator("#turn-1 .turn-annotations .badge.note", has_text="tone")).to_contain_text("0.8")

    found = http.get(f"/v1/projects/{PROJECT}/annotations",
                     params={"target_kind": "trace", "target_id": trace_id, "name": "tone"}).json()["data"]
    assert len(found) == 1
    note = found[0]
    assert (note["label"], note["score"], note["explanation"]) == ("warm", 0.8, "kind reply")
    assert (note["annotator_kind"], note["identifier"]) == ("HUMAN", "ui")
    config = http.get(f"/v1/projects/{PROJECT}/annotation-configs/tone").json()
    assert [(x["label"], x["polarity"]) for x in config["labels"]] == [("warm", "good"), ("kind", "good"),
                                                                      ("cold", "bad")]
    assert config["source"] == "project" and config["kind"] == "categorical"


def test_annotate_form_offers_configured_names_and_labels(page: Page, ui: UiServer, http: httpx.Client,
                                                          evals: EvalData) -> None:
    put = http.put(f"/v1/projects/{PROJECT}/annotation-configs/resolution", json={
        "kind": "categorical", "direction": "higher_is_better", "description": "Was the issue solved?",
        "labels": [{"label": "solved", "polarity": "good", "score": 1}, {"label": "unsolved", "polarity": "bad",
                                                                        "score": 0}]})
    assert put.status_code == 200, put.text
    page.goto(ui.url(f"/projects/{PROJECT}/sessions/ev-2"))
    form = _open_form(page, ".session-annotate")
    names = form.locator("select[name=name] option").all_text_contents()
    assert "resolution" in names and NAME in names and "helpfulness" in names  # stored and evaluator defaults
    form.locator("select[name=name]").select_option("resolution")
    labels = form.locator("select[name=label] option")
    expect(labels).to_have_count(3)
    assert labels.all_text_contents()[1:] == ["solved (good)", "unsolved (bad)"]
    expect(form.locator("input[name=score]")).to_be_hidden()  # a categorical name scores by its label
    form.locator("select[name=label]").select_option("unsolved")
    with page.expect_navigation():
        form.get_by_role("button", name="Save").click()
    found = http.get(f"/v1/projects/{PROJECT}/annotations",
                     params={"target_kind": "session", "target_id": "ev-2", "name": "resolution"}).json()["data"]
    assert [(n["label"], n["score"]) for n in found] == [("unsolved", 0.0)]
    # the annotation shows in its column of the sessions table, as its label
    page.goto(ui.url(f"/projects/{PROJECT}/sessions"))
    header = page.locator('#sessions-table th.eval-th[data-eval="resolution"]')
    expect(header).to_have_count(1)
    column = page.locator("#sessions-table").evaluate(
        """t => {
            const ths = Array.from(t.tHead.rows[t.tHead.rows.length - 1].cells);
            const i = ths.findIndex(th => th.dataset.eval === "resolution");
            const row = Array.from(t.tBodies[0].rows).find(r => r.dataset.key === "ev-2");
            return row.cells[i].textContent.trim();
        }""")
    assert column == "unsolved"


def test_annotate_form_shows_api_errors(page: Page, guard: Guard, ui: UiServer, http: httpx.Client,
                                        evals: EvalData) -> None:
    put = http.put(f"/v1/projects/{PROJECT}/annotation-configs/stars",
                   json={"kind": "continuous", "min_score": 1, "max_score": 5})
    assert put.status_code == 200, put.text
    page.goto(ui.url(f"/projects/{PROJECT}/sessions/ev-3"))
    form = _open_form(page, ".session-annotate")
    form.locator("select[name=name]").select_option("stars")
    expect(form.locator("select[name=label]")).to_be_hidden()
    expect(form.locator("input[name=score]")).to_have_attribute("placeholder", "1 – 5")
    for bad, phrase in (("abc", "valid number"), ("1e999", "finite"), ("9", "maximum")):
        # the same JSON (same key order) as app.js sends, straight to the API
        expected = http.post(f"/v1/projects/{PROJECT}/annotations", json={
            "target_kind": "session", "target_id": "ev-3", "name": "stars", "annotator_kind": "HUMAN",
            "identifier": "ui", "score": 9 if bad == "9" else bad})
        assert 400 <= expected.status_code < 500
        message = expected.json()["error"]["message"]
        assert phrase in message
        form.get_by_label("Score", exact=True).fill(bad)
        form.get_by_role("button", name="Save").click()
        expect(form.locator("[data-annotate-status]")).to_have_text(message)
        expect(form.locator("[data-annotate-status]")).to_have_class("annotate-status err")
    listed = http.get(f"/v1/projects/{PROJECT}/annotations",
                      params={"target_kind": "session", "target_id": "ev-3", "name": "stars"}).json()["data"]
    assert listed == []
    # The browser logs each refused fetch; those three 400s are expected, anything else still fails the test.
    refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert guard.console_errors.count(refused) == 3
    guard.console_errors[:] = [e for e in guard.console_errors if e != refused]


def test_annotate_form_hostile_text_renders_as_text(page: Page, ui: UiServer, http: httpx.Client,
                                                    evals: EvalData) -> None:
    page.goto(ui.url(f"/projects/{PROJECT}/sessions/ev-3"))
    form = _open_form(page, ".session-annotate")
    form.locator("select[name=name]").select_option(label="New annotation name…")
    form.get_by_label("Name", exact=True).last.fill(P_SCRIPT)
    form.get_by_label("Kind").select_option("freeform")
    form.locator("input[name=label_text]").fill(P_IMG)
    form.get_by_label("Explanation").fill(P_TD)
    with page.expect_navigation():
        form.get_by_role("button", name="Save").click()
    badge = page.locator("#session-header .badge.note", has_text=P_SCRIPT)
    expect(badge).to_contain_text(P_IMG)
    assert page.locator("img, [onerror], main script").count() == 0
    found = http.get(f"/v1/projects/{PROJECT}/annotations",
                     params={"target_kind": "session", "target_id": "ev-3", "name": P_SCRIPT}).json()["data"]
    assert [(n["label"], n["explanation"]) for n in found] == [(P_IMG, P_TD)]
    # the hostile name is now a score-less column of the sessions table, and its header link is a plain URL
    page.goto(ui.url(f"/projects/{PROJECT}/sessions"))
    header = page.locator("#sessions-table th.note-cell", has_text=P_SCRIPT)
    expect(header).to_have_count(1)
    header.locator("a").click()
    expect(page.locator(".ranking-note")).to_contain_text(P_SCRIPT)
    expect(page.locator("#sessions-table tbody tr")).to_have_count(0)  # a label only: nothing to rank


COLS_PROJECT = "evalcols"
#: Five evaluation columns, one named like the built-in "Errors" column; session label per session.
COLUMN_LABELS = {
    "user_frustration": {"ec-1": "frustrated", "ec-2": "ok"},
    "goal_completion": {"ec-1": "not_completed", "ec-2": "completed"},
    "errors": {"ec-1": "error", "ec-2": "ok"},
    "tool_call_correctness": {"ec-1": "incorrect", "ec-2": "correct"},
    "helpfulness": {"ec-1": "unhelpful", "ec-2": "helpful"},
}
MIN_TEXT_PX = 16 * 16  # .sessions .c-text { width: 16rem }


def test_five_evaluation_columns_keep_input_and_output_readable(page: Page, ui: UiServer, http: httpx.Client) -> None:
    start = now_ns() - 300 * SECOND
    long_text = "a long question about an order that never arrived and the refund that never came " * 3
    specs = [SessionSpec(sid, [TurnSpec("u-" + sid, f"{sid}: {long_text}", f"{sid} answer: {long_text}",
                                        start + i * 10 * SECOND)]) for i, sid in enumerate(("ec-1", "ec-2"))]
    send(ui.endpoint, COLS_PROJECT, specs)
    notes = [{"target_kind": "session", "target_id": sid, "name": name, "label": label, "annotator_kind": "LLM",
              "score": 1.0 if label in ("frustrated", "completed", "error", "correct", "helpful") else 0.0}
             for name, labels in COLUMN_LABELS.items() for sid, label in labels.items()]
    deadline = time.monotonic() + 20
    while (response := http.post(f"/v1/projects/{COLS_PROJECT}/annotations", json={"data": notes})).status_code \
            == 404 and time.monotonic() < deadline:
        time.sleep(0.2)  # the exported sessions are not stored yet
    assert response.status_code == 200, response.text

    page.goto(ui.url(f"/projects/{COLS_PROJECT}/sessions"))
    table = page.locator("#sessions-table")
    expect(table.locator("th.eval-th")).to_have_count(len(COLUMN_LABELS))
    for header in ("First input", "Last output"):
        box = table.locator("thead th", has_text=header).bounding_box()
        assert box is not None and box["width"] >= MIN_TEXT_PX - 1, (header, box)
    cell = table.locator('tbody tr[data-key="ec-1"] td.text').first.bounding_box()
    assert cell is not None and cell["width"] >= MIN_TEXT_PX - 1 and cell["height"] > 10
    # the table scrolls inside its frame; the page itself does not scroll sideways
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    assert page.locator(".table-wrap").evaluate("w => w.scrollWidth > w.clientWidth")
    # headers: the full names, under an "Evaluations" group, apart from the built-in "Errors"
    expect(table.locator("th.group-evals")).to_have_text("Evaluations")
    assert table.locator("th.group-evals").get_attribute("colspan") == str(len(COLUMN_LABELS))
    names = [t.strip() for t in table.locator("th.eval-th .eval-name").all_text_contents()]
    assert sorted(names) == sorted(COLUMN_LABELS)
    for th in table.locator("th.eval-th").all():  # wrapped, not cut
        assert th.evaluate("th => th.scrollWidth <= th.clientWidth + 1")
        assert (th.get_attribute("title") or "").startswith("Evaluation ")
    builtin = table.locator("thead th:not(.eval-th)", has_text="Errors")
    expect(builtin).to_have_count(1)
    assert builtin.evaluate("th => getComputedStyle(th).textTransform") == "uppercase"
    assert table.locator('th.eval-th[data-eval="errors"]').evaluate("th => getComputedStyle(th).textTransform") \
        == "none"
    # cells show the labels (majority label), with counts and the mean score on hover
    cells = table.locator('tbody tr[data-key="ec-1"] td.eval-cell')
    assert sorted(t.strip() for t in cells.all_text_contents()) == sorted(v["ec-1"] for v in COLUMN_LABELS.values())
    title = table.locator('tbody tr[data-key="ec-2"] td.eval-cell', has_text="completed").get_attribute("title")
    assert title and "1 annotation" in title and "mean score 1" in title
    # the users table: the same columns, labels and group header (a user's cells cover their sessions)
    page.goto(ui.url(f"/projects/{COLS_PROJECT}/users"))
    users = page.locator("#users-table")
    expect(users.locator("th.group-evals")).to_have_text("Evaluations")
    expect(users.locator("th.eval-th")).to_have_count(len(COLUMN_LABELS))
    texts = users.locator('tbody tr[data-key="u-ec-1"] td.eval-cell').all_text_contents()
    assert sorted(t.strip() for t in texts) == sorted(v["ec-1"] for v in COLUMN_LABELS.values())


def test_breakdown_link_opens_the_trace_when_the_turn_is_not_loaded(page: Page, ui: UiServer) -> None:
    long = ui.long  # 130 turns, turn 58 fails: it is on the first page of 100 turns, not on the second
    broken_trace = ui.trace_ids[long.session_id][57]
    page.goto(ui.url(f"/projects/shop/sessions/{long.session_id}"))
    expect(page.locator("#turn-58.broken .badge.breaks")).to_have_count(1)
    more = page.locator("a[data-more]").get_attribute("href")
    assert more and "turn_cursor=" in more
    page.goto(ui.url(more))
    expect(page.locator("#turn-58")).to_have_count(0)
    page.locator("#session-header .breakdown a").click()
    page.wait_for_url(f"**/traces/{broken_trace}")
