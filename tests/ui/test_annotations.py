"""Annotations (made through the REST API) show as score columns and badges, escaped like all data."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from .conftest import UiServer
from .traffic import P_IMG, P_SCRIPT, SessionSpec, TurnSpec, now_ns, send

pytestmark = pytest.mark.browser

PROJECT = "notes"


def test_annotation_scores_and_labels_on_sessions_turns_and_users(page: Page, ui: UiServer,
                                                                  http: httpx.Client) -> None:
    start = now_ns()
    specs = [SessionSpec("rated", [TurnSpec("rita", "q1", "a1", start), TurnSpec("rita", "q2", "a2", start + 10**9)]),
             SessionSpec("unrated", [TurnSpec("ugo", "q", "a", start + 5 * 10**9)])]
    trace_ids = send(ui.endpoint, PROJECT, specs)
    notes = [
        {"target_kind": "session", "target_id": "rated", "name": "helpfulness", "score": 0.75,
         "annotator_kind": "LLM"},
        {"target_kind": "session", "target_id": "rated", "name": P_SCRIPT, "label": P_IMG, "annotator_kind": "HUMAN"},
        {"target_kind": "trace", "target_id": trace_ids[0][1], "name": "user_frustration", "label": "frustrated",
         "score": 1.0, "annotator_kind": "LLM"},
    ]
    response = http.post(f"/v1/projects/{PROJECT}/annotations", json={"data": notes})
    assert response.status_code == 200, response.text

    page.goto(ui.url(f"/projects/{PROJECT}/sessions"))
    headers = page.locator("#sessions-table thead th.note-cell").all_text_contents()
    assert headers == sorted(["helpfulness", P_SCRIPT])  # one column per annotation name on the page
    rated = page.locator("#sessions-table tbody tr[data-key=rated]")
    expect(rated.locator("td.note-cell")).to_have_text([P_IMG, "0.75"])
    expect(page.locator("#sessions-table tbody tr[data-key=unrated] td.note-cell").first).to_have_text("")

    rated.get_by_role("link", name="rated").click()
    expect(page.locator("#session-header .badge.note", has_text="helpfulness")).to_contain_text("0.75")
    expect(page.locator("#session-header .badge.note", has_text=P_SCRIPT)).to_contain_text(P_IMG)
    expect(page.locator("#turn-2 .turn-annotations .badge.note")).to_have_text("user_frustration 1")
    expect(page.locator("#turn-1 .turn-annotations .badge")).to_have_count(0)
    assert page.locator("img, [onerror]").count() == 0
