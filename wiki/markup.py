"""Markdown -> safe HTML, plus the wiki links and headings it found.

Pipeline: Python-Markdown (a fixed set of extensions plus a ``[[wiki link]]``
inline processor) -> one module-level ``nh3.Cleaner`` -> a tiny post-pass that
adds ``rel="nofollow noopener noreferrer"`` to external links.  Raw HTML in the
source is passed through by Markdown and then neutralised by the cleaner.

This module must stay importable on its own: no Flask, nothing from ``wiki``.
"""

from __future__ import annotations

import html
import re
import threading
import unicodedata
import xml.etree.ElementTree as etree
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import markdown
import nh3
from markdown.inlinepatterns import InlineProcessor
from markdown.util import STX, AtomicString

__all__ = ["Heading", "Rendered", "link_targets", "render", "rewrite_links", "slugify"]


@dataclass(frozen=True)
class Heading:
    """One heading of a rendered page."""

    level: int  # 1..6
    id: str  # the anchor id in the HTML
    text: str  # plain text


@dataclass(frozen=True)
class Rendered:
    """Result of :func:`render`."""

    html: str  # sanitised HTML fragment
    links: frozenset[str]  # slugs of every [[wiki link]] target in the text
    headings: tuple[Heading, ...]


# --------------------------------------------------------------------------- slugs

_SLUG_JUNK_RE = re.compile(r"[\W_]+", re.UNICODE)
_SLUG_MAX = 200


def slugify(title: str) -> str:
    """Turn a page title into its URL slug ("CI/CD Pipelines" -> "ci-cd-pipelines")."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", title).lower())
    slug = _SLUG_JUNK_RE.sub("-", text).strip("-")
    return slug[:_SLUG_MAX].rstrip("-")


# ---------------------------------------------------------------------- wiki links

WIKILINK_PATTERN = r"\[\[([^\]\|\n]+)(?:\|([^\]\n]+))?\]\]"
_WIKILINK_RE = re.compile(WIKILINK_PATTERN)
_FENCE_OPEN_RE = re.compile(r"^[ \t]*(?:>[ \t]*)*(`{3,}|~{3,})")
_CODE_SPAN_RE = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n)[^\x00])+?)(?<!`)\1(?!`)")


def _nothing_exists(slug: str) -> bool:
    return False


def _mask_code(text: str) -> str:
    """Return ``text`` with fenced blocks and code spans replaced by NULs (same length)."""
    out: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        if fence is None:
            m = _FENCE_OPEN_RE.match(line)
            if m and not (m.group(1)[0] == "`" and "`" in line[m.end() :]):
                fence = m.group(1)
        elif re.match(rf"^[ \t]*(?:>[ \t]*)*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", line):
            fence = ""  # closing line: mask it, then leave the fence
        if fence is None:
            out.append(line)
        else:
            out.append(re.sub(r"[^\n]", "\x00", line))
            if fence == "":
                fence = None
    masked = "".join(out)
    return _CODE_SPAN_RE.sub(lambda m: "\x00" * len(m.group(0)), masked)


def _iter_links(text: str):
    """Yield wiki-link matches outside code (match text equals the original text)."""
    for m in _WIKILINK_RE.finditer(_mask_code(text)):
        if "\x00" not in m.group(0):
            yield m


def link_targets(text: str) -> frozenset[str]:
    """Slugs of all ``[[...]]`` link targets, ignoring fenced and inline code."""
    slugs = (slugify(m.group(1)) for m in _iter_links(text))
    return frozenset(s for s in slugs if s)


def rewrite_links(text: str, old_title: str, new_title: str) -> str:
    """Point every ``[[Old Title]]`` / ``[[Old Title|label]]`` at ``new_title``, keeping labels."""
    old = slugify(old_title)
    new = new_title.strip()
    if not old or not new:
        return text
    parts: list[str] = []
    pos = 0
    for m in _iter_links(text):
        if slugify(m.group(1)) != old:
            continue
        label = m.group(2)
        parts.append(text[pos : m.start()])
        parts.append(f"[[{new}|{label}]]" if label is not None else f"[[{new}]]")
        pos = m.end()
    parts.append(text[pos:])
    return "".join(parts)


class _WikiLinkProcessor(InlineProcessor):
    """Inline processor turning ``[[Title]]`` / ``[[Title|label]]`` into links."""

    def __init__(self, md: markdown.Markdown) -> None:
        super().__init__(WIKILINK_PATTERN, md)
        self.begin(_nothing_exists)

    def begin(self, exists: Callable[[str], bool]) -> None:
        """Reset per-render state."""
        self.exists = exists
        self.links: set[str] = set()
        self.known: dict[str, bool] = {}

    def handleMatch(self, m: re.Match[str], data: str):  # noqa: N802 (Markdown API)
        if STX in m.group(0):  # contains a stashed code span / escape: leave alone
            return None, None, None
        title = m.group(1).strip()
        label = (m.group(2) or "").strip() or title
        slug = slugify(title)
        if not slug:
            return None, None, None
        self.links.add(slug)
        if slug not in self.known:
            self.known[slug] = bool(self.exists(slug))
        el = etree.Element("a")
        el.text = AtomicString(label)
        if self.known[slug]:
            el.set("href", f"/wiki/{quote(slug, safe='')}")
            el.set("class", "wikilink")
        else:
            el.set("href", f"/wiki/{quote(slug, safe='')}/edit")
            el.set("class", "wikilink new")
            el.set("title", "Page does not exist yet")
        return el, m.start(0), m.end(0)


# ----------------------------------------------------------------------- markdown

_EXTENSIONS = [
    "markdown.extensions.tables",
    "pymdownx.highlight",
    "pymdownx.superfences",
    "markdown.extensions.footnotes",
    "markdown.extensions.toc",
    "pymdownx.tasklist",
    "pymdownx.tilde",
    "pymdownx.magiclink",
    "markdown.extensions.admonition",
    "markdown.extensions.sane_lists",
    "mdx_truly_sane_lists",  # after sane_lists: its list processors must win
]
_EXTENSION_CONFIGS = {
    "markdown.extensions.tables": {"use_align_attribute": True},
    "pymdownx.highlight": {
        "use_pygments": True,
        "css_class": "highlight",
        "guess_lang": False,
        "noclasses": False,
    },
    "markdown.extensions.toc": {"slugify": lambda value, sep: slugify(value), "permalink": False},
    "pymdownx.tasklist": {"custom_checkbox": False},
    "pymdownx.tilde": {"subscript": False},
    "pymdownx.magiclink": {
        "repo_url_shortener": False,
        "social_url_shortener": False,
        "repo_url_shorthand": False,
        "social_url_shorthand": False,
    },
    "mdx_truly_sane_lists": {"nested_indent": 2, "truly_sane": False},
}


def _new_markdown() -> markdown.Markdown:
    md = markdown.Markdown(
        extensions=_EXTENSIONS, extension_configs=_EXTENSION_CONFIGS, output_format="html"
    )
    md.parser.blockprocessors["olist"].LAZY_OL = False  # honour "3." starts, as sane_lists
    # Above "link" (160) and "html" (90), below "backtick" (190) and "escape" (180).
    md.inlinePatterns.register(_WikiLinkProcessor(md), "wikilink", 175)
    return md


_local = threading.local()  # one Markdown instance per thread, .reset() per call


def _flatten(tokens: list[dict], out: list[Heading]) -> list[Heading]:
    for tok in tokens:
        out.append(Heading(int(tok["level"]), str(tok["id"]), html.unescape(tok["name"])))
        _flatten(tok.get("children", []), out)
    return out


# ---------------------------------------------------------------------- sanitiser

_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "del", "s",
    "ins", "mark", "sub", "sup", "code", "pre", "kbd", "blockquote", "ul", "ol", "li", "dl", "dt",
    "dd", "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "a", "img", "span",
    "div", "input", "abbr", "details", "summary",
}  # fmt: skip
# Removed together with their contents (never shown as text).
_DROP_WITH_CONTENT = {
    "script", "style", "template", "noscript", "textarea", "title", "xmp", "iframe", "noembed",
    "noframes", "object", "svg", "math",
}  # fmt: skip
_CELL = {"align", "colspan", "rowspan"}
_BOX = {"class", "id"}
_ATTRIBUTES = {
    "a": {"href", "title", "class", "id"},  # rel is never user-controlled (see _add_rel)
    "img": {"src", "alt", "title"},
    "th": _CELL,
    "td": _CELL,
    **{f"h{n}": {"id"} for n in range(1, 7)},
    "ul": _BOX,
    "li": _BOX,
    "ol": _BOX | {"start"},
    **{tag: _BOX for tag in ("div", "span", "code", "pre", "p", "table")},
    "input": {"type", "checked", "disabled"},
    "sup": {"id"},
    "abbr": {"title"},
    "details": {"open"},
}


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if tag == "input":  # only ever a disabled checkbox (task lists)
        return {"type": "checkbox", "disabled": "disabled"}.get(attr, value)
    return value


_CLEANER = nh3.Cleaner(
    tags=_TAGS,
    clean_content_tags=_DROP_WITH_CONTENT,
    attributes=_ATTRIBUTES,
    attribute_filter=_attribute_filter,
    set_tag_attribute_values={"input": {"type": "checkbox", "disabled": "disabled"}},
    url_schemes={"http", "https", "mailto"},
    strip_comments=True,
    link_rel=None,
)

# nh3 output always double-quotes attribute values and escapes '"', '<' and '>'
# inside them (checked by _self_test), so these patterns are exact on its output.
_A_TAG_RE = re.compile(r"<a(\s[^>]*)?>")
_HREF_RE = re.compile(r'\shref="([^"]*)"')
_EXTERNAL_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
EXTERNAL_REL = "nofollow noopener noreferrer"


def _add_rel(m: re.Match[str]) -> str:
    attrs = m.group(1) or ""
    href = _HREF_RE.search(attrs)
    if href and _EXTERNAL_RE.match(href.group(1)):
        return f'<a{attrs} rel="{EXTERNAL_REL}">'
    return m.group(0)


def sanitize(fragment: str) -> str:
    """Clean an HTML fragment with the shared allow-list and add rel to external links."""
    return _A_TAG_RE.sub(_add_rel, _CLEANER.clean(fragment))


def _self_test() -> None:
    sample = (
        '<script>alert("s")</script><style>.x{}</style><!--c--><iframe>if</iframe>'
        '<a href="javascript:alert(1)" onclick="x()" rel="me" title="a>b">t</a>'
        '<a href="https://e.org" title=\'q"\'>e</a><img src="data:x" onerror="y()">'
        '<p style="color:red">p</p><input type="text" value="v">'
    )
    out = sanitize(sample)
    bad = ("<script", "alert", ".x{}", "<!--", "iframe", "if<", "javascript", "onclick")
    good = ('title="a&gt;b"', f'href="https://e.org" title="q&quot;" rel="{EXTERNAL_REL}"')
    if (
        any(b in out for b in (*bad, "onerror", "data:", "style", 'rel="me"', "text", 'value="'))
        or not all(g in out for g in good)
        or '<input type="checkbox" disabled="disabled">' not in out
    ):
        raise RuntimeError(f"markup: HTML sanitiser self-test failed: {out!r}")


_self_test()


# ------------------------------------------------------------------------- render


def render(text: str, exists: Callable[[str], bool] | None = None) -> Rendered:
    """Render wiki Markdown to sanitised HTML, collecting wiki links and headings."""
    outer = getattr(_local, "busy", False)  # re-entrant call (from exists): use a fresh one
    md: markdown.Markdown | None = None if outer else getattr(_local, "md", None)
    if md is None:
        md = _new_markdown()
        if not outer:
            _local.md = md
    proc: _WikiLinkProcessor = md.inlinePatterns["wikilink"]  # type: ignore[assignment]
    _local.busy = True
    try:
        md.reset()
        proc.begin(exists or _nothing_exists)
        body = md.convert(text)
        links = frozenset(proc.links)
        headings = tuple(_flatten(getattr(md, "toc_tokens", []), []))
    finally:
        _local.busy = outer
        proc.begin(_nothing_exists)  # drop the callback reference
    return Rendered(html=sanitize(body), links=links, headings=headings)
