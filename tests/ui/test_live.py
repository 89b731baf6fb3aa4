"""New sessions and new turns appear without a reload while a developer watches."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .conftest import UiServer
from .traffic import SECOND, SessionSpec, TurnSpec, now_ns, send

pytestmark = pytest.mark.browser

PROJECT = "live"


def test_new_sessions_and_turns_appear_without_reload(page: Page, ui: UiServer) -> None:
    start = now_ns()
    send(ui.endpoint, PROJECT, [SessionSpec("live-first", [TurnSpec("ann", "hi", "hello", start)])])
    page.goto(ui.url(f"/projects/{PROJECT}/sessions"))
    expect(page.locator("#sessions-table tbody tr")).to_have_count(1)
    page.evaluate("window.__notReloaded = true")

    send(ui.endpoint, PROJECT, [SessionSpec("live-second", [TurnSpec("bob", "new here", "welcome", start + SECOND)])])
    row = page.locator("#sessions-table tbody tr").first
    expect(row.locator("td.id")).to_have_text("live-second", timeout=15_000)
    expect(row).to_have_class("fresh")
    expect(page.locator(".stat", has_text="Sessions").locator("dd")).to_have_text("2")
    expect(page.locator("[data-live-status]")).to_have_class("live on")
    assert page.evaluate("window.__notReloaded") is True

    row.get_by_role("link", name="live-second").click()
    expect(page.locator("#turns > li")).to_have_count(1)
    page.evaluate("window.__notReloaded = true")
    second_turn = TurnSpec("bob", "and a follow-up question", "and its answer", start + 5 * SECOND, fail=True)
    send(ui.endpoint, PROJECT, [SessionSpec("live-second", [second_turn])])
    expect(page.locator("#turns > li")).to_have_count(2, timeout=15_000)
    expect(page.locator("#turn-2 .bubble.user .text")).to_have_text("and a follow-up question")
    expect(page.locator("#turn-2 .turn-error")).to_contain_text("model timed out")
    expect(page.locator("#session-header .stat", has_text="Turns").locator("dd")).to_have_text("2")
    expect(page.locator("#strip rect")).to_have_count(2)
    expect(page.locator("#strip rect.error")).to_have_count(1)
    page.locator("#turn-2 details.calls summary").click()  # a live-added turn expands like the others
    expect(page.locator("#turn-2 .call.llm")).to_have_count(1)
    assert page.evaluate("window.__notReloaded") is True


def test_a_new_session_keeps_every_row_of_a_full_page(page: Page, ui: UiServer) -> None:
    """Regression: adopting the rows of a live ``HTMLCollection`` skipped every other row."""
    project = "live-full"
    start = now_ns() - 3_600 * SECOND
    sessions = [SessionSpec(f"full-{n:02d}", [TurnSpec(f"user-{n % 5}", f"question {n}", f"answer {n}",
                                                        start + n * SECOND)]) for n in range(50)]
    send(ui.endpoint, project, sessions)
    page.goto(ui.url(f"/projects/{project}/sessions?limit=100"))
    ids = page.locator("#sessions-table tbody tr td.id")
    expect(ids).to_have_count(50)
    before = ids.all_inner_texts()
    assert sorted(before) == sorted(s.session_id for s in sessions)
    page.evaluate("window.__notReloaded = true")

    send(ui.endpoint, project, [SessionSpec("full-new", [TurnSpec("ann", "one more", "sure", now_ns())])])
    expect(ids).to_have_count(51, timeout=15_000)
    expect(ids.first).to_have_text("full-new")
    after = ids.all_inner_texts()
    assert sorted(after) == sorted([*before, "full-new"])
    assert "undefined" not in page.locator("#sessions-table").inner_text()
    assert page.evaluate("document.querySelectorAll('#session-rows > tr').length") == 51
    assert page.evaluate("document.getElementById('session-rows').childNodes.length") == 51  # no stray text
    assert page.evaluate("window.__notReloaded") is True
