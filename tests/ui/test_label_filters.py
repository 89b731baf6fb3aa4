"""The sessions page's Tag and Metadata filters in a real browser: the project's tags suggested, a
tag picked, metadata pairs added (each shown and droppable), and the filters kept by sorting."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from support.databases import fresh_database
from support.server import ServerProcess, new_server
from threadline import register, using_metadata, using_session, using_tags

PROJECT = "labels"
SENT: dict[str, tuple[list[str], dict[str, Any]]] = {
    "s-a": (["beta", "vip"], {"plan": "pro", "region": "eu"}),
    "s-b": (["beta"], {"plan": "pro", "region": "us"}),
    "s-c": (["gamma"], {"plan": "free"}),
    "s-d": (["alpha"], {}),
}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("labels-ui")
    with fresh_database("sqlite", tmp) as url:
        server = new_server(url, tmp / "home").start()
        try:
            provider = register(project_name=PROJECT, endpoint=server.base_url + "/v1/traces", set_global=False,
                                batch=False)
            tracer = provider.get_tracer("labels-ui")
            for session, (tags, metadata) in SENT.items():
                with using_session(session), using_tags(tags), using_metadata(metadata), \
                        tracer.start_as_current_span("turn", attributes={
                            "openinference.span.kind": "AGENT", "input.value": f"question of {session}",
                            "output.value": "answer"}):
                    pass
            provider.shutdown()
            yield server
        finally:
            server.stop()


def rows(page: Page) -> list[str]:
    return sorted(page.locator("#sessions-table tbody tr td.id").all_inner_texts())


def test_filter_sessions_by_tag_and_metadata(page: Page, labelled: ServerProcess) -> None:
    page.goto(f"{labelled.base_url}/projects/{PROJECT}/sessions")
    assert rows(page) == sorted(SENT)
    field = page.locator("input[name=tag]")
    expect(field).to_have_attribute("list", "known-tags")
    options = page.locator("datalist#known-tags option").evaluate_all("els => els.map(e => e.value)")
    assert options == ["alpha", "beta", "gamma", "vip"]
    field.fill("beta")
    field.press("Enter")
    expect(page).to_have_url(re.compile(r"tag=beta"))
    expect(page.locator("#sessions-table tbody tr")).to_have_count(2)
    assert rows(page) == ["s-a", "s-b"]
    # Add a metadata pair, then a second one: both stay (shown as chips), every pair must match.
    page.locator("input[data-metadata-filter]").fill("plan:pro")
    page.locator("input[data-metadata-filter]").press("Enter")
    expect(page.locator("[data-metadata-pair]")).to_have_count(1)
    assert rows(page) == ["s-a", "s-b"]
    page.locator("input[data-metadata-filter]").fill("region:eu")
    page.locator("input[data-metadata-filter]").press("Enter")
    expect(page.locator("[data-metadata-pair]")).to_have_count(2)
    expect(page.locator("#sessions-table tbody tr")).to_have_count(1)
    assert rows(page) == ["s-a"]
    assert parse_qs(urlsplit(page.url).query)["metadata"] == ["plan:pro", "region:eu"]
    # Sorting keeps every filter.
    page.locator("#sessions-table thead a", has_text="Turns").first.click()
    expect(page).to_have_url(re.compile(r"sort=turns"))
    query = parse_qs(urlsplit(page.url).query)
    assert query["tag"] == ["beta"] and query["metadata"] == ["plan:pro", "region:eu"]
    assert rows(page) == ["s-a"]
    # Dropping one pair keeps the other and the tag.
    page.locator("[data-metadata-pair]", has_text="region = eu").get_by_role("link").click()
    expect(page.locator("[data-metadata-pair]")).to_have_count(1)
    expect(page.locator("#sessions-table tbody tr")).to_have_count(2)
    assert rows(page) == ["s-a", "s-b"]
    page.locator("input[name=tag]").fill("gamma")
    page.locator("input[name=tag]").press("Enter")
    expect(page.locator(".empty-row")).to_contain_text("No session matches these filters")
