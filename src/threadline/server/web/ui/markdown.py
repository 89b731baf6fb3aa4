"""Markdown in chat bubbles and step details, rendered safely with markdown-it-py.

Span text is hostile input, so the one parser here is configured for it:

- raw HTML is off (``<script>``, ``<img onerror>``… come out as escaped text);
- a link or image target must be ``http:``, ``https:``, ``mailto:`` or relative: anything else
  (``javascript:``, ``data:``, ``vbscript:``, ``file:``, obfuscated with case, entities or
  control characters) stays text. markdown-it's own ``validateLink`` is replaced by
  :func:`safe_link`, and the renderer checks every ``href`` again;
- links carry ``rel="noopener noreferrer nofollow"``;
- images are never loaded (the CSP forbids other origins anyway, and loading one would tell a
  third party that someone read the conversation): they become a link to the image, or their alt
  text;
- code blocks and fences are ``<pre><code>``, fences with a ``language-…`` class (the language
  name reduced to letters, digits and ``+#._-``); tables and ``~~strikethrough~~`` are on;
- table cells are aligned by a class (``md-align-right``…), never an inline ``style`` (the CSP
  forbids those);
- line breaks inside a paragraph are kept (chat text is written that way);
- parsing costs time, and hostile text can make it cost more (``[[[[…``, ``*a*a*a…``): a text
  longer than :data:`MAX_MARKDOWN_CHARS` or with more than :data:`MAX_MARKUP_CHARS` of the
  characters that open inline markup is shown whole as plain text, as before markdown (so no
  text costs more than a few tenths of a second), and recent results are kept, up to
  :data:`CACHE_CHARS` (live updates and reloads render the same turns again).

:func:`markdown` and :func:`markdown_or_json` are the Jinja filters ``markdown`` and
``markdown_or_json``; both return :class:`markupsafe.Markup`.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache
from threading import Lock
from typing import Any
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup

#: Longer texts are shown as plain text (parsing is linear but slow in Python).
MAX_MARKDOWN_CHARS = 20_000
#: Texts with more of the characters that open inline markup (``[ * _ ` ~ !``) are shown as plain text.
MAX_MARKUP_CHARS = 2_000
#: Texts longer than this are never parsed as JSON (shown as markdown instead).
MAX_JSON_CHARS = 2_000_000
#: The ``rel`` of every link rendered from markdown.
LINK_REL = "noopener noreferrer nofollow"
#: Characters (texts and their HTML) of recent results kept for the next render of the same text.
CACHE_CHARS = 8_000_000
#: Nesting depth of blocks and inline markup (blockquotes, lists, emphasis) before markdown-it stops.
MAX_NESTING = 20

_SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):")
# Browsers drop ASCII tabs and newlines anywhere in a URL and leading C0 controls and spaces
# before reading its scheme: remove every such character before looking for one.
_IGNORED_IN_SCHEME = re.compile(r"[\x00-\x20\x7f-\x9f]+")
_LANGUAGE = re.compile(r"[^A-Za-z0-9+#._-]+")
_MARKUP = re.compile(r"[\[*_`~!]")
_IN_LINK = "threadline_in_link"
_ALIGN_CLASSES = {"text-align:left": "md-align-left", "text-align:center": "md-align-center",
                  "text-align:right": "md-align-right"}


def _scheme_allowed(url: str) -> bool:
    match = _SCHEME.match(_IGNORED_IN_SCHEME.sub("", url).lower())
    return match is None or match.group(1) in _SAFE_SCHEMES


def safe_link(url: str) -> bool:
    """True for an ``http:``, ``https:`` or ``mailto:`` URL or a relative one; False otherwise.

    A scheme is looked for the way a browser reads it (case-insensitive, ignoring control
    characters and spaces), so ``JaVa\\tScRiPt:`` is refused like ``javascript:``; and again in
    the percent-decoded URL (markdown-it validates a URL after percent-encoding it), so
    ``java%09script:`` is refused too although a browser would read it as a relative path. A URL
    whose first ``:`` comes after a ``/``, ``?`` or ``#`` (``a/b:c``) has no scheme: it is
    relative. (Entities such as ``&colon;`` are decoded by markdown-it before it validates.)
    """
    return _scheme_allowed(url) and _scheme_allowed(unquote(url))


class _SafeMarkdown(MarkdownIt):
    """markdown-it with :func:`safe_link` as its link validator."""

    def validateLink(self, url: str) -> bool:  # markdown-it's name
        """Links and images only to http(s), mailto and relative URLs."""
        return safe_link(url)


def _link_open(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    href = token.attrGet("href")
    if href is None or not safe_link(str(href)):
        # Unreachable through the validator; kept so that no other path can emit a script link.
        token.attrs.pop("href", None)
    token.attrSet("rel", LINK_REL)
    env[_IN_LINK] = True  # images inside a link become text (no link in a link)
    return self.renderToken(tokens, idx, options, env)


def _link_close(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    env[_IN_LINK] = False
    return self.renderToken(tokens, idx, options, env)


def _image(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children, options, env) if token.children else ""
    label = escapeHtml(alt or "image")
    src = token.attrGet("src")
    if src is None or not safe_link(str(src)) or env.get(_IN_LINK):
        return f'<span class="md-image">{label}</span>'
    return (f'<a class="md-image" href="{escapeHtml(str(src))}" rel="{LINK_REL}" '
            f'title="Image (not loaded here)">{label}</a>')


def _cell_open(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    align = _ALIGN_CLASSES.get(str(token.attrs.pop("style", "")))
    if align is not None:
        token.attrJoin("class", align)
    return self.renderToken(tokens, idx, options, env)


def _fence(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    language = _LANGUAGE.sub("", token.info.strip().split(maxsplit=1)[0] if token.info.strip() else "")[:40]
    token.info = language
    return str(RendererHTML.fence(self, tokens, idx, options, env))


@cache
def parser() -> MarkdownIt:
    """The one markdown parser of the UI (built once; markdown-it parsers are reusable)."""
    md = _SafeMarkdown("commonmark", {"html": False, "breaks": True, "xhtmlOut": False,
                                      "maxNesting": MAX_NESTING, "linkify": False, "typographer": False})
    md.disable(["html_block", "html_inline"])
    md.enable(["table", "strikethrough"])
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("link_close", _link_close)
    md.add_render_rule("image", _image)
    md.add_render_rule("fence", _fence)
    md.add_render_rule("th_open", _cell_open)
    md.add_render_rule("td_open", _cell_open)
    return md


def formattable(text: str) -> bool:
    """Whether ``text`` is parsed as markdown (short enough, not too much markup); else plain text."""
    return len(text) <= MAX_MARKDOWN_CHARS and len(_MARKUP.findall(text)) <= MAX_MARKUP_CHARS


class RenderCache:
    """Recently rendered texts, bounded by the characters kept (text and HTML), least recent out.

    markdown-it-py takes a few milliseconds for a formatted answer, and a conversation page shows
    a hundred turns; reloads and live updates render the same texts again. Thread-safe.
    """

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self._entries: OrderedDict[str, Markup] = OrderedDict()
        self._chars = 0
        self._lock = Lock()

    def get(self, source: str) -> Markup | None:
        """The HTML rendered for ``source``, if it is still kept."""
        with self._lock:
            html = self._entries.get(source)
            if html is not None:
                self._entries.move_to_end(source)
            return html

    def put(self, source: str, html: Markup) -> None:
        """Keep ``html`` for ``source``, dropping the least recently used results beyond the bound."""
        size = len(source) + len(html)
        if size > self.max_chars:
            return
        with self._lock:
            if source in self._entries:
                return
            self._entries[source] = html
            self._chars += size
            while self._chars > self.max_chars:
                old, old_html = self._entries.popitem(last=False)
                self._chars -= len(old) + len(old_html)


_cache = RenderCache(CACHE_CHARS)


def _render(source: str) -> Markup:
    html = _cache.get(source)
    if html is None:
        html = Markup(parser().render(source).strip())  # markdown-it escaped every piece of the text
        _cache.put(source, html)
    return html


def markdown(text: Any) -> Markup:
    """``text`` rendered as safe HTML (empty for ``None``); see the module docstring for the rules."""
    if text is None:
        return Markup("")
    source = text if isinstance(text, str) else str(text)
    if not formattable(source):
        return Markup('<div class="md-plain" title="Shown as plain text (too long or too much markup to format)">'
                      '{}</div>').format(source)
    return _render(source)


def parse_json_container(text: str) -> dict[str, Any] | list[Any] | None:
    """The JSON object or array that ``text`` holds, or ``None`` when it holds anything else."""
    stripped = text.strip()
    if stripped[:1] not in ("{", "[") or len(stripped) > MAX_JSON_CHARS:
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict | list) else None


def dump_json(value: Any) -> str:
    """Pretty JSON (keys of objects sorted, unicode kept)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=isinstance(value, dict), default=str)


def markdown_or_json(text: Any) -> Markup:
    """A JSON object or array pretty-printed in a code block; any other text as :func:`markdown`.

    For tool arguments and results, which are JSON more often than prose.
    """
    if text is None:
        return Markup("")
    source = text if isinstance(text, str) else str(text)
    value = parse_json_container(source)
    if value is None:
        return markdown(source)
    return Markup('<pre class="json"><code class="language-json">{}</code></pre>').format(dump_json(value))
