"""Tests for wiki.markup: Markdown rendering, wiki links and HTML sanitising."""

from __future__ import annotations

import threading
from html.parser import HTMLParser

import pytest

from wiki.markup import Heading, Rendered, link_targets, render, rewrite_links, slugify


class _Collector(HTMLParser):
    """Collect (tag, attrs) of every start tag and the text content."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


def parse(html: str) -> _Collector:
    p = _Collector()
    p.feed(html)
    p.close()
    return p


def tags(html: str, name: str) -> list[dict[str, str | None]]:
    return [attrs for tag, attrs in parse(html).tags if tag == name]


def text_of(html: str) -> str:
    return "".join(parse(html).text)


# ----------------------------------------------------------------------- slugify


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("CI/CD Pipelines", "ci-cd-pipelines"),
        ("REST vs GraphQL", "rest-vs-graphql"),
        ("Café Ünïcode", "café-ünïcode"),
        ("  --  ", ""),
        ("", ""),
        ("snake_case_name", "snake-case-name"),
        ("  Leading and trailing!  ", "leading-and-trailing"),
        ("C++ & C#", "c-c"),
        ("Ｆｕｌｌｗｉｄｔｈ", "fullwidth"),  # NFKC
        ("日本語 ページ", "日本語-ページ"),
        ("Python 3.12", "python-3-12"),
    ],
)
def test_slugify(title: str, slug: str) -> None:
    assert slugify(title) == slug


def test_slugify_max_length() -> None:
    slug = slugify("word " * 100)
    assert len(slug) <= 200
    assert not slug.endswith("-")


# --------------------------------------------------------------- markdown features


def test_empty_text() -> None:
    r = render("")
    assert isinstance(r, Rendered)
    assert r.html.strip() == ""
    assert r.links == frozenset()
    assert r.headings == ()


def test_table_uses_align_attribute() -> None:
    html = render("| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |\n").html
    ths, tds = tags(html, "th"), tags(html, "td")
    assert [t.get("align") for t in ths] == ["left", "center", "right"]
    assert [t.get("align") for t in tds] == ["left", "center", "right"]
    assert "<table>" in html
    assert "style=" not in html


def test_fenced_code_highlighted_with_classes() -> None:
    html = render('```python\ndef f(x):\n    return "hi"\n```\n').html
    divs = tags(html, "div")
    assert any("highlight" in (d.get("class") or "").split() for d in divs)
    span_classes = {s.get("class") for s in tags(html, "span")}
    assert {"k", "nf", "s2"} <= span_classes
    assert "style=" not in html
    assert "<pre>" in html


def test_fenced_code_without_language_is_not_guessed() -> None:
    html = render("```\ndef f(): pass\n```\n").html
    assert "highlight" in html
    assert not [s for s in tags(html, "span") if s.get("class") == "k"]


@pytest.mark.parametrize(
    "src",
    [
        "1. step one\n\n    ```bash\n    echo hi\n    ```\n\n2. step two\n",
        "- item\n  ```python\n  x = 1\n  ```\n- next\n",
    ],
)
def test_fenced_code_in_list_item(src: str) -> None:
    html = render(src).html
    li_start = html.index("<li>")
    assert html.index('class="highlight"') > li_start
    assert html.index('class="highlight"') < html.index("</li>")
    assert "```" not in html


def test_footnotes() -> None:
    html = render("Claim.[^1]\n\n[^1]: Source.\n").html
    sup = tags(html, "sup")
    assert sup and sup[0].get("id") == "fnref:1"
    hrefs = [a.get("href") for a in tags(html, "a")]
    assert "#fn:1" in hrefs and "#fnref:1" in hrefs
    assert any(li.get("id") == "fn:1" for li in tags(html, "li"))
    assert 'class="footnote"' in html


def test_footnotes_do_not_leak_between_renders() -> None:
    first = render("A[^1]\n\n[^1]: one\n").html
    second = render("A[^1]\n\n[^1]: one\n").html
    assert first == second
    assert render("no notes").html == "<p>no notes</p>"


def test_heading_ids_and_headings_list() -> None:
    r = render("# Intro\n\n## Café Setup\n\n### Deep *dive*\n\n## Intro\n\ntext\n")
    assert r.headings == (
        Heading(1, "intro", "Intro"),
        Heading(2, "café-setup", "Café Setup"),
        Heading(3, "deep-dive", "Deep dive"),
        Heading(2, "intro_1", "Intro"),
    )
    ids = [h.get("id") for tag in ("h1", "h2", "h3") for h in tags(r.html, tag)]
    assert set(ids) == {"intro", "café-setup", "deep-dive", "intro_1"}


def test_heading_text_is_plain() -> None:
    r = render("## Use [[Redis Cache|Redis]] & <b>friends</b>\n")
    assert r.headings == (Heading(2, "use-redis-friends", "Use Redis & friends"),)


def test_task_list() -> None:
    html = render("- [ ] todo\n- [x] done\n").html
    inputs = tags(html, "input")
    assert len(inputs) == 2
    for inp in inputs:
        assert inp.get("type") == "checkbox"
        assert "disabled" in inp
    assert "checked" not in inputs[0] and "checked" in inputs[1]
    assert "task-list-item" in html


def test_strikethrough() -> None:
    assert "<del>gone</del>" in render("this is ~~gone~~ now").html


@pytest.mark.parametrize(
    ("src", "href"),
    [
        ("see https://example.com/path?q=1 now", "https://example.com/path?q=1"),
        ("see www.python.org now", "http://www.python.org"),
    ],
)
def test_bare_url_autolink(src: str, href: str) -> None:
    links = tags(render(src).html, "a")
    assert [a.get("href") for a in links] == [href]
    assert links[0].get("rel") == "nofollow noopener noreferrer"


def test_internal_links_get_no_rel() -> None:
    links = tags(render("[a](/wiki/x) [b](#top) [[Page]]").html, "a")
    assert len(links) == 3
    assert all("rel" not in a for a in links)


def test_admonition() -> None:
    html = render('!!! note "Heads up"\n    Body text.\n').html
    assert any(d.get("class") == "admonition note" for d in tags(html, "div"))
    assert "Heads up" in html and "Body text." in html


def test_nested_list_two_spaces() -> None:
    html = render("- parent\n  - child\n  - child 2\n- sibling\n").html
    assert html.count("<ul>") == 2
    inner = html.index("<ul>", html.index("<ul>") + 1)
    assert html.index("parent") < inner < html.index("child")


def test_ordered_list_start() -> None:
    assert tags(render("3. three\n4. four\n").html, "ol")[0].get("start") == "3"


# --------------------------------------------------------------------- wiki links


def test_wikilink_red_by_default() -> None:
    r = render("See [[Database Design]].")
    (a,) = tags(r.html, "a")
    assert a["href"] == "/wiki/database-design/edit"
    assert a["class"] == "wikilink new"
    assert a["title"] == "Page does not exist yet"
    assert text_of(r.html) == "See Database Design."
    assert r.links == frozenset({"database-design"})


def test_wikilink_blue_when_exists() -> None:
    seen: list[str] = []

    def exists(slug: str) -> bool:
        seen.append(slug)
        return slug == "django"

    r = render("[[Django]] and [[django]] and [[Flask]]", exists=exists)
    a1, a2, a3 = tags(r.html, "a")
    assert a1 == {"href": "/wiki/django", "class": "wikilink"}
    assert a2 == a1
    assert a3["class"] == "wikilink new"
    assert r.links == frozenset({"django", "flask"})
    assert sorted(seen) == ["django", "flask"]  # one lookup per slug


def test_wikilink_label_form() -> None:
    r = render("[[Caching with Redis|Redis caching]]", exists=lambda s: True)
    (a,) = tags(r.html, "a")
    assert a["href"] == "/wiki/caching-with-redis"
    assert text_of(r.html) == "Redis caching"


def test_wikilink_unicode_slug_is_quoted() -> None:
    (a,) = tags(render("[[Café Ünïcode]]", exists=lambda s: True).html, "a")
    assert a["href"] == "/wiki/caf%C3%A9-%C3%BCn%C3%AFcode"


@pytest.mark.parametrize("src", ["[[ ]]", "[[--]]", "[[!!!|label]]", "[[Page|]]", "[[]]"])
def test_wikilink_blank_target_left_literal(src: str) -> None:
    r = render(src)
    assert not tags(r.html, "a")
    assert "[[" in r.html
    assert r.links == frozenset()


def test_wikilinks_in_code_are_ignored() -> None:
    src = "Use `[[Inline]]` here.\n\n```\n[[Fenced]]\n```\n\n    [[Indented]]\n\n[[Real]]\n"
    r = render(src)
    assert r.links == frozenset({"real"})
    assert "[[Inline]]" in r.html and "[[Fenced]]" in r.html
    assert link_targets(src) >= {"real"}
    assert not link_targets(src) & {"inline", "fenced"}


def test_wikilink_escaped_title_and_label() -> None:
    r = render('[[<b>"x"</b>|<i>y</i> & z]]')
    assert "<b>" not in r.html and "<i>" not in r.html
    assert text_of(r.html) == "<i>y</i> & z"


# ------------------------------------------------------------ link_targets / rename


def test_link_targets() -> None:
    src = (
        "[[Django]], [[Django REST Framework|DRF]] and [[ django ]].\n"
        "`[[Not A Link]]`\n\n"
        "~~~\n[[Also Not]]\n~~~\n\n"
        "- item\n  ```python\n  x = '[[Nope]]'\n  ```\n\n"
        "[[ ]] [[CI/CD Pipelines]]\n"
    )
    assert link_targets(src) == frozenset({"django", "django-rest-framework", "ci-cd-pipelines"})
    assert link_targets(src) == render(src).links
    assert link_targets("") == frozenset()


def test_link_targets_unclosed_fence_hides_rest() -> None:
    assert link_targets("[[A]]\n```\n[[B]]\n") == frozenset({"a"})


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("See [[Old Title]].", "See [[New Title]]."),
        ("See [[old  title]].", "See [[New Title]]."),
        ("See [[OLD-TITLE|the old one]].", "See [[New Title|the old one]]."),
        (
            "[[Old Title]] and [[Other]] and [[Old Title|x]]",
            "[[New Title]] and [[Other]] and [[New Title|x]]",
        ),
        ("[[Old Titles]]", "[[Old Titles]]"),
        ("`[[Old Title]]` [[Old Title]]", "`[[Old Title]]` [[New Title]]"),
        ("```\n[[Old Title]]\n```\n[[Old Title]]\n", "```\n[[Old Title]]\n```\n[[New Title]]\n"),
        ("no links at all", "no links at all"),
    ],
)
def test_rewrite_links(src: str, expected: str) -> None:
    assert rewrite_links(src, "Old Title", "New Title") == expected


def test_rewrite_links_empty_titles_are_noops() -> None:
    assert rewrite_links("[[--]] [[x]]", "--", "New") == "[[--]] [[x]]"
    assert rewrite_links("[[x]]", "x", "   ") == "[[x]]"


# ---------------------------------------------------------------------- sanitiser

FORBIDDEN_TAGS = {
    "script", "style", "iframe", "object", "embed", "form", "svg", "math", "textarea",
    "button", "select", "link", "meta", "base", "frame", "frameset", "applet", "template",
}  # fmt: skip
BAD_SCHEMES = ("javascript:", "vbscript:", "data:")

HOSTILE = [
    "<script>alert(1)</script>",
    "before <script>alert(1)</script> after",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](vbscript:msgbox)",
    "[x](data:text/html;base64,PHNjcmlwdD4=)",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "![x](javascript:alert(1))",
    "<iframe src='https://evil.example'></iframe>",
    "<object data='x.swf'></object>",
    "<embed src='x.swf'>",
    "<form action='/x'><input name=q></form>",
    "<svg onload=alert(1)><circle r=1 /></svg>",
    "<math><mi xlink:href='javascript:alert(1)'>x</mi></math>",
    "<style>body{display:none}</style>",
    '<p style="color:red">red</p>',
    "<div onclick=alert(1)>click</div>",
    "[[<script>x</script>]]",
    "[[Page|<script>alert(1)</script>]]",
    "[[a|<img src=x onerror=1>]]",
    '<a href="  javascript:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    "[x](&#106;avascript:alert(1))",
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<base href="https://evil.example/">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    "<!-- secret comment -->visible",
    '<input type="text" value="x">',
    '<input type="hidden" name="csrf" value="x">',
    '<textarea>x</textarea><button onclick="x()">b</button><select><option>o</select>',
    '<a href="https://ok.example" onmouseover="alert(1)" style="x">ok</a>',
    '<table><tr><td style="background:url(javascript:alert(1))">x</td></tr></table>',
    "```html\n<script>alert(1)</script>\n```",
    "<details open ontoggle=alert(1)><summary>s</summary>d</details>",
    '<img src="https://ok.example/i.png" srcset="javascript:alert(1)">',
    "<scr<script>ipt>alert(1)</script>",
    '<div id="x" class="y" data-x="z" role="button" tabindex="1">d</div>',
]


@pytest.mark.parametrize("src", HOSTILE)
def test_hostile_input_is_neutralised(src: str) -> None:
    html = render(src).html
    parsed = parse(html)
    assert not parsed.comments
    for tag, attrs in parsed.tags:
        assert tag not in FORBIDDEN_TAGS, html
        for name, value in attrs.items():
            assert not name.startswith("on"), html
            assert name not in {"style", "srcset", "formaction", "xlink:href"}, html
            assert not name.startswith("data-"), html
            if name in {"href", "src"}:
                assert not (value or "").strip().lower().startswith(BAD_SCHEMES), html
        if tag == "input":
            assert attrs.get("type") == "checkbox" and "disabled" in attrs, html
            assert set(attrs) <= {"type", "checked", "disabled"}, html
    assert "<script" not in html.lower()


@pytest.mark.parametrize("src", ["<style>body{display:none}</style>", "<script>alert(1)</script>"])
def test_script_and_style_content_removed(src: str) -> None:
    html = render(src).html
    assert "display:none" not in html
    assert "alert(1)" not in html


def test_comment_text_removed() -> None:
    assert "secret" not in render("<!-- secret -->\n\nvisible").html


def test_wikilink_script_title_is_escaped_text() -> None:
    r = render("[[<script>x</script>]]")
    assert "&lt;script&gt;" in r.html
    assert r.links == frozenset({"script-x-script"})


def test_harmless_inline_html_kept() -> None:
    html = render("Press <kbd>Ctrl</kbd>+<kbd>C</kbd>, H<sub>2</sub>O, <mark>hi</mark>").html
    assert "<kbd>Ctrl</kbd>" in html and "<sub>2</sub>" in html and "<mark>hi</mark>" in html


def test_raw_html_links_get_rel_and_safe_scheme() -> None:
    html = render(
        '<a href="https://x.example" rel="opener">x</a> <a href="mailto:a@b.c">m</a>'
    ).html
    a1, a2 = tags(html, "a")
    assert a1 == {"href": "https://x.example", "rel": "nofollow noopener noreferrer"}
    assert a2["href"] == "mailto:a@b.c"


# ------------------------------------------------------------------ whole pages

TYPICAL_PAGE = """\
## Overview

[[PostgreSQL]] is a relational database. See also [[Database Design|schema design]]
and the official docs at https://www.postgresql.org/docs/.[^docs]

!!! tip "Connection pooling"
    Use PgBouncer when many processes open short-lived connections.

## Setup

1. Install the server:

    ```bash
    sudo apt-get install postgresql
    ```

2. Create a role and a database.
  - one nested point
  - another one

| Setting | Default | Notes |
|:--------|--------:|:-----:|
| `max_connections` | 100 | per server |
| `shared_buffers` | 128MB | ~25% of RAM |

## Querying

```python
import psycopg

with psycopg.connect("dbname=app") as conn:
    rows = conn.execute("SELECT id, name FROM users WHERE active").fetchall()
    for row in rows:
        print(row)
```

- [x] Indexes on foreign keys
- [ ] ~~Use EAV tables~~ avoid

[^docs]: Version 16 documentation.
"""


def test_typical_page_renders() -> None:
    src = (TYPICAL_PAGE * 5)[:4096]
    assert 3500 < len(src.encode()) <= 4096
    r = render(src, exists=lambda slug: slug == "postgresql")
    assert {"postgresql", "database-design"} <= r.links
    assert r.headings[0] == Heading(2, "overview", "Overview")
    assert 'class="wikilink"' in r.html and 'class="wikilink new"' in r.html
    assert "<table>" in r.html and "<del>" in r.html and "admonition tip" in r.html


def test_render_is_thread_safe() -> None:
    expected = render(TYPICAL_PAGE).html
    results: list[str] = []

    def work() -> None:
        for _ in range(5):
            results.append(render(TYPICAL_PAGE).html)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 20


def test_reentrant_exists_callback() -> None:
    def exists(slug: str) -> bool:
        return bool(render(f"[[inner {slug}]]").links)

    r = render("[[Outer]]", exists=exists)
    assert r.links == frozenset({"outer"})
    assert 'href="/wiki/outer"' in r.html
