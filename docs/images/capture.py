"""Take the README screenshots of the web UI from a running server with demo data.

    threadline serve &                 # or: make serve
    threadline demo                    # fills the `demo` project
    .venv/bin/python docs/images/capture.py --base-url http://127.0.0.1:6006 --project demo
    .venv/bin/python docs/images/capture.py --only conversation-tool-loop   # just one screenshot

Drives Debian's chromium (``/usr/bin/chromium``) through Playwright; writes PNGs next to this file.
``conversation-tool-loop.png`` shows a demo conversation traced like the OpenAI instrumentor with no
parent span (one trace per LLM call) with a tool-loop turn expanded: LLM call → tools → LLM call.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from playwright.sync_api import Page, sync_playwright

HERE = Path(__file__).parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def shoot(page: Page, url: str, name: str, out: Path, full_page: bool = False) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(out / f"{name}.png"), full_page=full_page)
    print(f"wrote {out / name}.png")


def tool_loop_turn(api: httpx.Client, project: str, sessions: list[dict[str, Any]]) -> tuple[str, int]:
    """(session id, turn index) of a tool loop sent as one trace per LLM call: a turn of several
    traces whose steps hold tool calls, preferably two tools in one reply and a Markdown table."""
    best: tuple[tuple[int, ...], str, int] | None = None
    for summary in sorted(sessions, key=lambda s: s["session_id"]):
        detail = api.get(f"/v1/projects/{project}/sessions/{quote(summary['session_id'], safe='')}").json()
        for turn in detail["turns"]:
            kinds = [step["kind"] for step in turn["steps"]]
            if len(turn["trace_ids"]) < 2 or "tool" not in kinds or turn["status"] != "ok":
                continue
            score = (kinds.count("tool") >= 2, "|" in (turn["output"] or ""), -len(detail["turns"]), -turn["index"])
            if best is None or score > best[0]:
                best = (score, summary["session_id"], turn["index"])
    if best is None:
        raise SystemExit("no tool-loop turn sent as one trace per LLM call: fill the project with `threadline demo`")
    return best[1], best[2]


def shoot_tool_loop(browser: Any, base: str, project: str, session_id: str, index: int, out: Path) -> None:
    """The conversation with turn ``index`` expanded: its steps and rendered Markdown in view."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
    page.goto(f"{base}/projects/{project}/sessions/{quote(session_id, safe='')}")
    page.wait_for_load_state("networkidle")
    turn = page.locator(f"#turn-{index + 1}")
    turn.locator("details.calls > summary").click()
    turn.locator(".call-list").wait_for()
    page.wait_for_load_state("networkidle")
    # The whole turn (its head, both bubbles and every step), from the page laid out in full.
    box = turn.bounding_box()
    assert box is not None
    top = box["y"] + page.evaluate("window.scrollY") - 16
    page.screenshot(path=str(out / "conversation-tool-loop.png"), full_page=True,
                    clip={"x": 0, "y": max(0, top), "width": 1280, "height": box["height"] + 32})
    print(f"wrote {out / 'conversation-tool-loop'}.png")
    page.close()


def shoot_sessions(browser: Any, base: str, project: str, out: Path) -> None:
    """The sessions page in the light and dark themes."""
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport={"width": 1280, "height": 820}, color_scheme=scheme, device_scale_factor=1)
        shoot(page, f"{base}/projects/{project}/sessions", "sessions" + ("" if scheme == "light" else "-dark"), out)
        page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:6006")
    parser.add_argument("--project", default="demo")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--only", choices=("conversation-tool-loop", "sessions"), default=None,
                        help="Take only this screenshot (sessions: light and dark).")
    args = parser.parse_args()
    base, project = args.base_url.rstrip("/"), quote(args.project, safe="")
    api = httpx.Client(base_url=base, timeout=30)
    sessions = api.get(f"/v1/projects/{project}/sessions", params={"limit": 200}).json()["data"]
    loop_session, loop_index = tool_loop_turn(api, project, sessions)
    if args.only:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            if args.only == "sessions":
                shoot_sessions(browser, base, project, args.out)
            else:
                shoot_tool_loop(browser, base, project, loop_session, loop_index, args.out)
            browser.close()
        return
    # A conversation worth showing: several turns, a tool call and a failure if possible.
    chosen = max(sessions, key=lambda s: (min(s["turns"], 6), s["errors"] > 0, len(s["user_ids"])))
    detail = api.get(f"/v1/projects/{project}/sessions/{quote(chosen['session_id'], safe='')}").json()
    with_tools = [t for t in detail["turns"] if t["tool_calls"]] or detail["turns"]
    trace_id = with_tools[0]["trace_id"]
    user = api.get(f"/v1/projects/{project}/users", params={"sort": "sessions"}).json()["data"][0]["user_id"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        shoot_sessions(browser, base, project, args.out)
        for scheme in ("light",):
            page = browser.new_page(viewport={"width": 1280, "height": 820}, color_scheme=scheme,
                                    device_scale_factor=1)
            shoot(page, f"{base}/projects/{project}/sessions/{quote(chosen['session_id'], safe='')}",
                  "conversation", args.out)
            page.locator("details.calls").nth(0).locator("summary").click()
            page.wait_for_selector(".call-list")
            page.screenshot(path=str(args.out / "conversation-expanded.png"))
            span = next((t["tool_calls"][0]["span_id"] for t in with_tools if t["tool_calls"]), "")
            query = f"?span={span}" if span else ""
            shoot(page, f"{base}/projects/{project}/traces/{trace_id}{query}", "trace", args.out)
            shoot(page, f"{base}/projects/{project}/users", "users", args.out)
            shoot(page, f"{base}/projects/{project}/users/{quote(user, safe='')}", "user", args.out)
            page.close()
        shoot_tool_loop(browser, base, project, loop_session, loop_index, args.out)
        narrow = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
        shoot(narrow, f"{base}/projects/{project}/sessions/{quote(chosen['session_id'], safe='')}", "narrow",
              args.out)
        browser.close()


if __name__ == "__main__":
    main()
