"""Markdown in chat bubbles and step details: what renders, and what never does (web/ui/markdown.py).

:func:`assert_safe_html` is an independent check of the renderer's output (stdlib HTML parser,
allowlists of tags, attributes, classes and link schemes); ``test_xss`` runs its corpus through it.
"""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

import pytest
from markupsafe import Markup

from threadline.server.web.ui.markdown import (
    LINK_REL,
    MAX_MARKDOWN_CHARS,
    MAX_MARKUP_CHARS,
    RenderCache,
    markdown,
    markdown_or_json,
    safe_link,
)
from threadline.server.web.ui.render import environment, pretty

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "s", "code", "pre", "a", "ul", "ol", "li", "blockquote", "hr", "span", "div",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
}
ALLOWED_ATTRIBUTES = {"href", "rel", "title", "class", "start"}
CLASS = re.compile(r"(language-[A-Za-z0-9+#._-]+|md-[a-z-]+|json)")
LINK_SCHEMES = {"", "http", "https", "mailto"}


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"tag <{tag}>")
        values = dict(attrs)
        for name, value in attrs:
            if name not in ALLOWED_ATTRIBUTES:
                self.problems.append(f"attribute {name}={value!r} on <{tag}>")
            if name == "class" and not all(CLASS.fullmatch(c) for c in (value or "").split()):
                self.problems.append(f"class {value!r}")
        if tag == "a":
            if values.get("rel") != LINK_REL:
                self.problems.append(f"link without rel: {attrs}")
            href = values.get("href")
            if href is not None:
                # Browsers ignore control characters and spaces in a scheme; look at it both ways.
                for form in (href, unquote(href)):
                    bare = re.sub(r"[\x00-\x20\x7f-\x9f]", "", form).lower()
                    if urlsplit(bare).scheme not in LINK_SCHEMES or "script:" in bare or bare.startswith("data:"):
                        self.problems.append(f"link target {href!r}")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_comment(self, data: str) -> None:
        self.problems.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.problems.append(f"declaration {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.problems.append(f"processing instruction {data!r}")


def assert_safe_html(html: str) -> list[str]:
    """Fail unless ``html`` has only allowed tags, attributes and classes, and every link is an
    http(s), mailto or relative one with our ``rel``; return the tags seen."""
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert checker.problems == [], (checker.problems, html[:2000])
    return checker.tags


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def text_of(html: str) -> str:
    """The text a browser would show (tags dropped, entities decoded)."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def test_emphasis_code_and_line_breaks() -> None:
    html = markdown("**bold**, *italic*, ~~gone~~ and `x < y`\nsecond line")
    assert "<strong>bold</strong>" in html and "<em>italic</em>" in html and "<s>gone</s>" in html
    assert "<code>x &lt; y</code>" in html
    assert "<br>" in html  # chat text keeps its line breaks
    assert_safe_html(html)


def test_fences_and_code_blocks_are_pre_code_with_a_language_class() -> None:
    html = markdown("```python\nif a < b:\n    print('<b>')\n```\n\n```\nplain\n```\n\n    indented <i>")
    assert '<pre><code class="language-python">if a &lt; b:\n    print(\'&lt;b&gt;\')\n</code></pre>' in html
    assert "<pre><code>plain\n</code></pre>" in html
    assert "<pre><code>indented &lt;i&gt;\n</code></pre>" in html
    hostile = markdown('```"><script>alert(1)</script> x\nbody\n```')
    assert re.search(r'<pre><code class="language-[A-Za-z0-9+#._-]+">body', hostile), hostile
    assert_safe_html(html)
    assert_safe_html(hostile)


def test_lists_tables_quotes_and_headings() -> None:
    html = markdown("# Title\n\n## Sub\n\n- one\n- two\n\n3. three\n4. four\n\n> quoted\n\n"
                    "| name | n |\n|:-----|--:|\n| a | 1 |\n| b | 2 |\n\n---")
    tags = assert_safe_html(html)
    assert "<h1>Title</h1>" in html and "<h2>Sub</h2>" in html
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in html
    assert '<ol start="3">' in html
    assert "<blockquote>" in html and "<hr>" in html
    assert tags.count("tr") == 3 and tags.count("th") == 2 and tags.count("td") == 4
    assert '<td class="md-align-right">2</td>' in html  # alignment by class: the CSP forbids style=""
    assert "style=" not in html


@pytest.mark.parametrize(("source", "href"), [
    ("[site](https://example.com/a?b=1)", "https://example.com/a?b=1"),
    ("[plain](http://example.com)", "http://example.com"),
    ("[mail](mailto:someone@example.com)", "mailto:someone@example.com"),
    ("[here](/projects/shop/sessions)", "/projects/shop/sessions"),
    ("[anchor](#turn-2)", "#turn-2"),
    ("<https://example.com/auto>", "https://example.com/auto"),
    ("[ref][r]\n\n[r]: https://example.com/ref", "https://example.com/ref"),
])
def test_safe_links_keep_their_target_and_get_rel(source: str, href: str) -> None:
    html = markdown(source)
    assert f'href="{href}"' in html, html
    assert f'rel="{LINK_REL}"' in html
    assert_safe_html(html)


@pytest.mark.parametrize("source", [
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](<java\tscript:alert(1)>)",
    "[x](<java script:alert(1)>)",
    "[x](&#106;avascript:alert(1))",
    "[x](javascript&#58;alert(1))",
    "[x](%6Aavascript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](file:///etc/passwd)",
    "<javascript:alert(1)>",
    "[x][r]\n\n[r]: javascript:alert(1)",
])
def test_script_and_data_links_stay_text(source: str) -> None:
    html = markdown(source)
    assert "<a" not in html, html
    assert_safe_html(html)


def test_safe_link_reads_schemes_as_a_browser_does() -> None:
    for good in ("https://x", "HTTP://x", "mailto:a@b", "/p", "p/q:r", "?a=b:c", "#x", "//host/p", ""):
        assert safe_link(good), good
    for bad in ("javascript:x", " JavaScript:x", "java\nscript:x", "\x01javascript:x", "data:image/png;base64,AA",
                "vbscript:x", "java%0Ascript:x", "ftp://x", "file:///x"):
        assert not safe_link(bad), bad


def test_raw_html_is_escaped_text() -> None:
    for source in ("<b>bold?</b>", "<script>alert(1)</script>", '<div onclick="alert(1)">x</div>',
                   "<!-- comment -->", '<a href="javascript:alert(1)">x</a>', "<img src=x onerror=alert(1)>"):
        html = markdown(source)
        assert_safe_html(html)
        assert source in text_of(html), html  # shown exactly as written


def test_images_are_never_loaded() -> None:
    html = markdown("![a chart](https://example.com/chart.png)")
    assert "<img" not in html
    assert 'class="md-image" href="https://example.com/chart.png"' in html and "a chart" in html
    data = markdown("![pixel](data:image/png;base64,iVBORw0KGgo=)")
    assert "<img" not in data and "<a" not in data
    nested = markdown("[![logo](https://example.com/l.png)](https://example.com)")
    assert nested.count("<a ") == 1 and '<span class="md-image">logo</span>' in nested
    for html_out in (html, data, nested):
        assert_safe_html(html_out)


def test_link_titles_and_entities_are_escaped() -> None:
    html = markdown('[x](https://example.com "a \\" onmouseover=\\"alert(1)") &lt;script&gt; &amp; &#60;b&#62;')
    assert_safe_html(html)
    assert 'title="a &quot; onmouseover=&quot;alert(1)"' in html
    assert "<script>" in text_of(html) and "<b>" in text_of(html)  # entities decoded to text, not markup


def test_long_or_markup_heavy_text_is_plain_text() -> None:
    long = "**not bold** <b>" + "x" * MAX_MARKDOWN_CHARS
    html = markdown(long)
    assert html.startswith('<div class="md-plain"') and "<strong>" not in html
    assert text_of(html) == long  # all of it, as text
    heavy = "[" * (MAX_MARKUP_CHARS + 1)
    assert markdown(heavy).startswith('<div class="md-plain"')
    assert markdown("[" * MAX_MARKUP_CHARS).startswith("<p>")
    assert_safe_html(html)


@pytest.mark.parametrize("bomb", [
    "*a" * 5000, "_a" * 5000, "**_" * 3000 + "x" + "_**" * 3000, "[" * 2000, "![" * 1000, "[a](" * 2000,
    "> " * 5000 + "deep", "- " * 5000 + "deep", "1. " * 3000 + "deep", "`" * 19_000, "<" * 19_000,
    "&#" * 9000, "a\\\n" * 6000, "|a" * 5000 + "\n" + "|-" * 5000, "\n".join("|a|b|" for _ in range(3000)),
    "*" * 19_000, "[x](" + "(" * 18_000, "<https://" + "a" * 18_000 + ">",
])
def test_hostile_nesting_renders_in_bounded_time(bomb: str) -> None:
    started = time.perf_counter()
    html = markdown(bomb)
    elapsed = time.perf_counter() - started
    assert elapsed < 3.0, f"{elapsed:.2f} s for {bomb[:20]!r}…"  # measured: under 0.4 s each
    assert_safe_html(html)


def test_markdown_or_json_pretty_prints_json_containers() -> None:
    html = markdown_or_json('{"b": 1, "a": "<x>"}')
    assert html.startswith('<pre class="json"><code class="language-json">')
    assert text_of(html) == '{\n  "a": "<x>",\n  "b": 1\n}'
    assert text_of(markdown_or_json("[1, 2]")) == "[\n  1,\n  2\n]"
    assert markdown_or_json("**sunny**") == "<p><strong>sunny</strong></p>"
    assert markdown_or_json("{not json") == "<p>{not json</p>"
    assert markdown_or_json('"a string"') == "<p>&quot;a string&quot;</p>"
    assert markdown_or_json("[" * 100_000 + "]" * 100_000).startswith('<div class="md-plain"')  # too deep for json
    assert markdown_or_json(None) == "" and markdown(None) == ""
    for out in (html, markdown_or_json("[1, 2]")):
        assert_safe_html(out)


def test_filters_are_registered_and_pretty_shares_the_json_rule() -> None:
    env = environment()
    assert env.filters["markdown"] is markdown and env.filters["markdown_or_json"] is markdown_or_json
    assert env.from_string("{{ t|markdown }}").render(t="<i>*x*</i>") == "<p>&lt;i&gt;<em>x</em>&lt;/i&gt;</p>"
    assert pretty('{"b": [1], "a": null}') == '{\n  "a": null,\n  "b": [\n    1\n  ]\n}'
    assert pretty("12") == "12" and pretty("{oops") == "{oops"


def test_render_cache_keeps_recent_results_within_its_bound() -> None:
    cache = RenderCache(max_chars=100)
    for key in ("a", "b", "c"):
        cache.put(key * 10, Markup(key * 20))  # 30 characters each
    assert cache.get("a" * 10) == "a" * 20  # now the most recent
    cache.put("d" * 10, Markup("d" * 20))  # 120 > 100: the least recent ("b") goes
    assert cache.get("b" * 10) is None
    assert [cache.get(k * 10) for k in "acd"] == ["a" * 20, "c" * 20, "d" * 20]
    cache.put("huge", Markup("h" * 200))  # larger than the whole cache: not kept, nothing evicted
    assert cache.get("huge") is None and cache.get("a" * 10) is not None


def test_a_repeated_text_renders_the_same_html() -> None:
    stamp = str(time.time_ns())  # a text not rendered before
    text = f"# Same\n\n**text** {stamp}"
    assert markdown(text) == markdown(text) == f"<h1>Same</h1>\n<p><strong>text</strong> {stamp}</p>"
