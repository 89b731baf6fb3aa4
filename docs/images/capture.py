"""Take the README screenshots of the web UI from a running server with demo data.

    threadline serve &                 # or: make serve
    threadline demo                    # fills the `demo` project
    .venv/bin/python docs/images/capture.py --base-url http://127.0.0.1:6006 --project demo

Drives Debian's chromium (``/usr/bin/chromium``) through Playwright; writes PNGs next to this file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:6006")
    parser.add_argument("--project", default="demo")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    base, project = args.base_url.rstrip("/"), quote(args.project, safe="")
    api = httpx.Client(base_url=base, timeout=30)
    sessions = api.get(f"/v1/projects/{project}/sessions", params={"limit": 200}).json()["data"]
    # A conversation worth showing: several turns, a tool call and a failure if possible.
    chosen = max(sessions, key=lambda s: (min(s["turns"], 6), s["errors"] > 0, len(s["user_ids"])))
    detail = api.get(f"/v1/projects/{project}/sessions/{quote(chosen['session_id'], safe='')}").json()
    with_tools = [t for t in detail["turns"] if t["tool_calls"]] or detail["turns"]
    trace_id = with_tools[0]["trace_id"]
    user = api.get(f"/v1/projects/{project}/users", params={"sort": "sessions"}).json()["data"][0]["user_id"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for scheme in ("light", "dark"):
            page = browser.new_page(viewport={"width": 1280, "height": 820}, color_scheme=scheme,
                                    device_scale_factor=1)
            suffix = "" if scheme == "light" else "-dark"
            shoot(page, f"{base}/projects/{project}/sessions", f"sessions{suffix}", args.out)
            if scheme == "dark":
                page.close()
                continue
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
        narrow = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
        shoot(narrow, f"{base}/projects/{project}/sessions/{quote(chosen['session_id'], safe='')}", "narrow",
              args.out)
        browser.close()


if __name__ == "__main__":
    main()
