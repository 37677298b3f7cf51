"""Tests for wiki.diffs and the templates/macros/diff.html macros."""

from __future__ import annotations

import re
import time
from pathlib import Path

import jinja2
import pytest
from markupsafe import Markup

from wiki import diffs
from wiki.diffs import Diff, Row, compute

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def lines(*items: str) -> str:
    """Join items into a newline-terminated text."""
    return "".join(f"{item}\n" for item in items)


def numbered(count: int, prefix: str = "line") -> list[str]:
    """Distinct lines 'line 1' .. 'line N'."""
    return [f"{prefix} {i}" for i in range(1, count + 1)]


def kinds(diff: Diff) -> list[str]:
    """The row kinds of a diff, in order."""
    return [row.kind for row in diff.rows]


# ---------------------------------------------------------------- compute()


def test_identical_texts() -> None:
    """Identical texts give no rows."""
    text = lines("# Title", "", "Some text.")
    diff = compute(text, text)
    assert diff.identical
    assert diff.rows == ()
    assert (diff.added, diff.removed) == (0, 0)


def test_both_empty() -> None:
    """Two empty texts are identical."""
    diff = compute("", "")
    assert diff.identical
    assert diff.rows == ()


def test_identical_with_context_none() -> None:
    """Identical texts stay row-less even when showing everything."""
    assert compute("a\nb", "a\nb", context=None).rows == ()


def test_pure_add() -> None:
    """Appending lines gives add rows with new-side numbers only."""
    diff = compute(lines("a", "b"), lines("a", "b", "c", "d"))
    assert kinds(diff) == ["context", "context", "add", "add"]
    adds = [row for row in diff.rows if row.kind == "add"]
    assert [(r.old_no, r.new_no) for r in adds] == [(None, 3), (None, 4)]
    assert [str(r.new_html) for r in adds] == ["c", "d"]
    assert all(r.old_html == "" for r in adds)
    assert (diff.added, diff.removed) == (2, 0)
    assert not diff.identical


def test_pure_delete() -> None:
    """Removing a line gives a delete row with its old-side number only."""
    diff = compute(lines("a", "b", "c"), lines("a", "c"))
    assert kinds(diff) == ["context", "delete", "context"]
    row = diff.rows[1]
    assert (row.old_no, row.new_no) == (2, None)
    assert row.old_html == "b"
    assert row.new_html == ""
    assert (diff.added, diff.removed) == (0, 1)


def test_empty_old_gives_all_adds() -> None:
    """A new page (empty old text) is all additions."""
    diff = compute("", lines("one", "two", "three"))
    assert kinds(diff) == ["add"] * 3
    assert [row.new_no for row in diff.rows] == [1, 2, 3]
    assert (diff.added, diff.removed) == (3, 0)


def test_empty_new_gives_all_deletes() -> None:
    """Blanking a page is all deletions."""
    diff = compute(lines("one", "two"), "")
    assert kinds(diff) == ["delete", "delete"]
    assert (diff.added, diff.removed) == (0, 2)


def test_changed_word_marks_and_numbers() -> None:
    """A changed word becomes one change row with <del>/<ins> around just that word."""
    old = lines("intro", "The quick brown fox jumps.", "outro")
    new = lines("intro", "The quick red fox jumps.", "outro")
    diff = compute(old, new)
    assert kinds(diff) == ["context", "change", "context"]
    row = diff.rows[1]
    assert (row.old_no, row.new_no) == (2, 2)
    assert isinstance(row.old_html, Markup)
    assert isinstance(row.new_html, Markup)
    assert str(row.old_html) == "The quick <del>brown</del> fox jumps."
    assert str(row.new_html) == "The quick <ins>red</ins> fox jumps."
    assert (diff.added, diff.removed) == (1, 1)


def test_change_row_numbers_after_shift() -> None:
    """Line numbers follow each side when earlier lines were inserted."""
    old = lines("a", "x = 1", "b")
    new = lines("new", "a", "x = 2", "b")
    diff = compute(old, new)
    change = next(row for row in diff.rows if row.kind == "change")
    assert (change.old_no, change.new_no) == (2, 3)
    assert str(change.old_html) == "x = <del>1</del>"
    assert str(change.new_html) == "x = <ins>2</ins>"


def test_adjacent_changed_words_are_one_mark() -> None:
    """Several changed words separated by spaces are wrapped together."""
    diff = compute("the quick brown fox", "the slow red fox")
    (row,) = diff.rows
    assert str(row.old_html) == "the <del>quick brown</del> fox"
    assert str(row.new_html) == "the <ins>slow red</ins> fox"


def test_dissimilar_lines_become_delete_and_add() -> None:
    """Lines with almost nothing in common are a delete row followed by an add row."""
    diff = compute(lines("keep", "alpha beta gamma"), lines("keep", "one two three four"))
    assert kinds(diff) == ["context", "delete", "add"]
    deleted, added = diff.rows[1], diff.rows[2]
    assert (deleted.old_no, deleted.new_no) == (2, None)
    assert (added.old_no, added.new_no) == (None, 2)
    assert "<del>" not in deleted.old_html
    assert "<ins>" not in added.new_html
    assert (diff.added, diff.removed) == (1, 1)


def test_replace_block_with_extra_lines() -> None:
    """Unequal replace blocks pair lines one to one, leftovers become adds."""
    old = lines("top", "colour red", "bottom")
    new = lines("top", "colour blue", "brand new line here", "bottom")
    diff = compute(old, new)
    assert kinds(diff) == ["context", "change", "add", "context"]
    assert diff.rows[2].new_no == 3
    assert diff.rows[3].old_no == 3
    assert diff.rows[3].new_no == 4
    assert (diff.added, diff.removed) == (2, 1)


def test_html_in_lines_is_escaped() -> None:
    """User HTML never comes out raw, in context, add or delete rows."""
    old = lines("<b>bold</b>", "<script>alert(1)</script>")
    new = lines("<b>bold</b>", "<script>alert(2)</script>", '<img src=x onerror="y">')
    diff = compute(old, new)
    html = "".join(str(row.old_html) + str(row.new_html) for row in diff.rows)
    assert "<script>" not in html
    assert "<b>" not in html
    assert "<img" not in html
    assert "&lt;script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "&#34;y&#34;" in html or "&quot;y&quot;" in html


def test_html_inside_word_marks_is_escaped() -> None:
    """Changed words that contain HTML are escaped inside the <del>/<ins> marks."""
    diff = compute("say hello to <em>", "say hello to <script>")
    (row,) = diff.rows
    assert row.kind == "change"
    assert str(row.old_html) == "say hello to &lt;<del>em</del>&gt;"
    assert str(row.new_html) == "say hello to &lt;<ins>script</ins>&gt;"
    diff = compute("a b & c", "a b < c")
    (row,) = diff.rows
    assert "<del>&amp;</del>" in row.old_html
    assert "<ins>&lt;</ins>" in row.new_html


def test_markup_in_input_is_not_trusted() -> None:
    """Even Markup input is treated as plain source text and escaped."""
    diff = compute(Markup("<b>a</b>"), Markup("<b>a</b>\n<i>x</i>"))
    assert str(diff.rows[0].new_html) == "&lt;b&gt;a&lt;/b&gt;"
    assert str(diff.rows[1].new_html) == "&lt;i&gt;x&lt;/i&gt;"


def test_skip_rows_collapse_unchanged_regions() -> None:
    """Long unchanged runs collapse to skip rows, keeping `context` lines next to changes."""
    old = numbered(30)
    new = list(old)
    new[14] = "line 15 edited"  # line 15
    diff = compute("\n".join(old), "\n".join(new), context=3)
    assert kinds(diff) == ["skip"] + ["context"] * 3 + ["change"] + ["context"] * 3 + ["skip"]
    first, last = diff.rows[0], diff.rows[-1]
    assert first.skipped == 11  # lines 1..11
    assert last.skipped == 12  # lines 19..30
    assert first.old_no is None and first.new_no is None
    assert first.old_html == "" and first.new_html == ""
    assert [row.old_no for row in diff.rows[1:4]] == [12, 13, 14]
    assert [row.old_no for row in diff.rows[5:8]] == [16, 17, 18]
    assert diff.rows[4].old_no == 15


def test_skip_row_between_two_changes() -> None:
    """A long unchanged run between two changes keeps context on both sides."""
    old = numbered(20)
    new = list(old)
    new[0] = "line 1 edited"
    new[19] = "line 20 edited"
    diff = compute("\n".join(old), "\n".join(new), context=2)
    assert kinds(diff) == ["change", "context", "context", "skip", "context", "context", "change"]
    skip = diff.rows[3]
    assert skip.skipped == 14  # lines 4..17
    assert diff.rows[2].old_no == 3
    assert diff.rows[4].old_no == 18
    # Every line is accounted for, shown or skipped.
    shown = sum(1 for row in diff.rows if row.kind != "skip")
    assert shown + skip.skipped == 20


def test_short_unchanged_region_is_not_collapsed() -> None:
    """A run of at most 2*context unchanged lines between changes is shown whole."""
    old = numbered(8)
    new = list(old)
    new[0] = "line 1 edited"
    new[7] = "line 8 edited"
    diff = compute("\n".join(old), "\n".join(new), context=3)
    assert "skip" not in kinds(diff)
    assert len(diff.rows) == 8


def test_context_zero_hides_all_unchanged_lines() -> None:
    """context=0 shows only the changes."""
    old = numbered(10)
    new = list(old)
    new[4] = "line 5 edited"
    diff = compute("\n".join(old), "\n".join(new), context=0)
    assert kinds(diff) == ["skip", "change", "skip"]
    assert [row.skipped for row in diff.rows] == [4, 0, 5]


def test_context_none_shows_everything() -> None:
    """context=None disables collapsing."""
    old = numbered(50)
    new = list(old)
    new[25] = "line 26 edited"
    diff = compute("\n".join(old), "\n".join(new), context=None)
    assert "skip" not in kinds(diff)
    assert len(diff.rows) == 50
    assert [row.new_no for row in diff.rows] == list(range(1, 51))


def test_negative_context_rejected() -> None:
    """A negative context is a programming error."""
    with pytest.raises(ValueError):
        compute("a", "b", context=-1)


def test_crlf_and_lf_are_equal() -> None:
    """Windows line endings do not count as changes."""
    assert compute("a\r\nb\r\nc\r\n", "a\nb\nc\n").identical
    assert compute("a\r\nb", "a\nb\n").identical
    diff = compute("a\r\nb\r\nc\r\n", "a\nB\nc\n")
    assert kinds(diff) == ["context", "delete", "add", "context"]
    assert "\r" not in "".join(str(row.old_html) + str(row.new_html) for row in diff.rows)


def test_counts_added_and_removed() -> None:
    """Counts: change rows count once on each side, plus plain adds and deletes."""
    old = lines("same", "x = 1", "gone", "same 2", "alpha beta")
    new = lines("same", "x = 2", "same 2", "totally new words", "extra")
    diff = compute(old, new)
    adds = sum(1 for row in diff.rows if row.kind in ("add", "change"))
    dels = sum(1 for row in diff.rows if row.kind in ("delete", "change"))
    assert diff.added == adds == 3
    assert diff.removed == dels == 3


def test_rows_are_frozen() -> None:
    """Rows and diffs are immutable."""
    row = compute("a", "b").rows[0]
    assert isinstance(row, Row)
    with pytest.raises(AttributeError):
        row.kind = "x"  # type: ignore[misc]


def test_large_text_is_fast_and_small() -> None:
    """5,000 lines with 3 edits diff quickly into a handful of rows."""
    old = [f"Paragraph {i}: some text about topic {i % 7}." if i % 4 else "" for i in range(5000)]
    new = list(old)
    new[100] = "Paragraph 100: rewritten text about topic 2."
    new[2500] = "A brand new line of text"
    del new[4000]
    old_text, new_text = "\n".join(old), "\n".join(new)
    compute(old_text, new_text)  # warm up
    start = time.perf_counter()
    diff = compute(old_text, new_text)
    elapsed = time.perf_counter() - start
    assert len(diff.rows) < 40
    assert diff.added == 2
    assert diff.removed == 3
    assert elapsed < 0.5  # generous: typically a few milliseconds


def test_repetitive_large_text_is_fast() -> None:
    """Many repeated lines (blank lines, list bullets) do not make the diff quadratic."""
    old = ["- item" if i % 3 else "" for i in range(4000)]
    new = list(old)
    new[10] = "- item changed"
    new.insert(3000, "- new item")
    start = time.perf_counter()
    diff = compute("\n".join(old), "\n".join(new))
    elapsed = time.perf_counter() - start
    assert (diff.added, diff.removed) == (2, 1)
    assert len(diff.rows) < 30
    assert elapsed < 0.5


def test_huge_replace_block_skips_word_diff() -> None:
    """A replace block of more than 500 lines becomes plain delete/add rows."""
    old = [f"old line {i}" for i in range(600)]
    new = [f"new line {i}" for i in range(600)]
    diff = compute("\n".join(old), "\n".join(new))
    assert set(kinds(diff)) == {"delete", "add"}
    assert (diff.added, diff.removed) == (600, 600)
    assert not any("<del>" in row.old_html or "<ins>" in row.new_html for row in diff.rows)


def test_opcodes_reconstruct_new_text() -> None:
    """The internal line matcher produces consistent opcodes on awkward inputs."""
    cases = [
        (["a", "", "b", "", "c"], ["", "a", "", "c", "", "b"]),
        (["x"] * 50 + ["y"], ["y"] + ["x"] * 49),
        ([], ["a"]),
        (["a", "b", "c"], ["c", "b", "a"]),
    ]
    for a, b in cases:
        out: list[str] = []
        pos_a = pos_b = 0
        for tag, i1, i2, j1, j2 in diffs._line_opcodes(a, b):
            assert (i1, j1) == (pos_a, pos_b)
            if tag == "equal":
                assert a[i1:i2] == b[j1:j2]
            out.extend(b[j1:j2])
            pos_a, pos_b = i2, j2
        assert out == b
        assert (pos_a, pos_b) == (len(a), len(b))


def test_myers_fallback_matches_everything_it_can() -> None:
    """The Myers fallback finds a longest common subsequence."""
    a = [1, 2, 3, 1, 2, 2, 1]
    b = [3, 2, 1, 2, 1, 3]
    blocks = diffs._myers_blocks(a, b)
    assert sum(size for _, _, size in blocks) == 4
    for i, j, size in blocks:
        assert a[i : i + size] == b[j : j + size]


# ------------------------------------------------------------------- macros


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    """A bare Jinja environment pointed at the project templates."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True)


def render(env: jinja2.Environment, source: str, **context: object) -> str:
    """Render a template string that can import the diff macros."""
    prelude = '{% from "macros/diff.html" import diff_table, diff_stats %}'
    return env.from_string(prelude + source).render(**context)


@pytest.fixture()
def sample() -> Diff:
    """A diff with context, change, delete, add and skip rows plus hostile HTML."""
    old = numbered(12) + ["the quick brown fox", "<script>alert(1)</script>", "alpha beta"]
    new = numbered(12) + ["the quick red fox", "<script>alert(2)</script>", "totally new", "tail"]
    return compute("\n".join(old), "\n".join(new))


def assert_safe(html: str) -> None:
    """No inline styles, no scripts, no raw user HTML."""
    assert "style=" not in html
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert "&amp;lt;" not in html  # not double-escaped


def test_inline_table(env: jinja2.Environment, sample: Diff) -> None:
    """The inline view renders one column of text with markers and word marks."""
    html = render(env, "{{ diff_table(d) }}", d=sample)
    assert_safe(html)
    assert '<div class="diff-wrap">' in html
    assert '<table class="diff diff-inline">' in html
    headers = re.findall(r'<th scope="col">([^<]*)</th>', html)
    assert headers == ["Old line", "New line", "Text"]
    assert '<tr class="context">' in html
    assert '<tr class="del">' in html
    assert '<tr class="add">' in html
    assert '<tr class="skip">' in html
    assert "… 9 unchanged lines …" in html
    assert 'colspan="3"' in html
    assert "<del>brown</del>" in html
    assert "<ins>red</ins>" in html
    assert "−" in html and "+" in html
    # A change row becomes a del row followed by an add row.
    assert re.search(r'<tr class="del">.*?<del>brown</del>.*?</tr>\s*<tr class="add">', html)
    assert 'class="code"' in html
    assert "<pre" not in html


def test_split_table(env: jinja2.Environment, sample: Diff) -> None:
    """The split view puts old text left, new right, change rows side by side."""
    html = render(env, '{{ diff_table(d, view="split") }}', d=sample)
    assert_safe(html)
    assert '<table class="diff diff-split">' in html
    headers = re.findall(r'<th scope="col">([^<]*)</th>', html)
    assert headers == ["Old line", "Old text", "New line", "New text"]
    assert 'colspan="4"' in html
    change = re.search(r'<tr class="change">(.*?)</tr>', html)
    assert change is not None
    assert "<del>brown</del>" in change.group(1)
    assert "<ins>red</ins>" in change.group(1)
    assert change.group(1).index("<del>") < change.group(1).index("<ins>")
    add_rows = re.findall(r'<tr class="add">(.*?)</tr>', html)
    assert len(add_rows) == 2  # "totally new" (too unlike "alpha beta") and "tail"
    for row in add_rows:
        assert row.count('class="num empty"') == 1
        assert row.count('class="code empty"') == 1
        assert row.index("empty") < row.index('class="code add"')
    assert "tail" in add_rows[1]
    assert re.search(r'<tr class="del">.*?alpha beta.*?</tr>', html)


def test_split_delete_row_has_empty_new_side(env: jinja2.Environment) -> None:
    """Deleted lines leave the right-hand cells empty."""
    html = render(env, '{{ diff_table(d, "split") }}', d=compute("a\nb\nc", "a\nc"))
    row = re.search(r'<tr class="del">(.*?)</tr>', html)
    assert row is not None
    assert '<td class="num empty"></td><td class="code empty"></td>' in row.group(1)


def test_identical_renders_no_differences(env: jinja2.Environment) -> None:
    """Identical texts render a short message instead of a table."""
    for view in ("inline", "split"):
        html = render(env, "{{ diff_table(d, view) }}", d=compute("x", "x"), view=view)
        assert '<p class="diff-empty">No differences.</p>' in html
        assert "<table" not in html


def test_single_skipped_line_is_singular(env: jinja2.Environment) -> None:
    """One hidden line reads '1 unchanged line'."""
    diff = compute("a\nb\nc", "a\nb\nC", context=1)
    html = render(env, "{{ diff_table(d) }}", d=diff)
    assert "… 1 unchanged line …" in html


def test_diff_stats(env: jinja2.Environment, sample: Diff) -> None:
    """The stats macro shows +added and −removed."""
    html = render(env, "{{ diff_stats(d) }}", d=sample)
    expected = (
        f'<span class="diff-stats"><span class="added">+{sample.added}</span> '
        f'<span class="removed">−{sample.removed}</span></span>'
    )
    assert html.strip() == expected
    assert (sample.added, sample.removed) == (4, 3)


def test_code_cells_have_no_template_whitespace(env: jinja2.Environment) -> None:
    """Code cells are pre-wrap, so the macro must not add whitespace inside them."""
    html = render(env, "{{ diff_table(d) }}", d=compute("  indented", "  indented!"))
    cells = re.findall(r'<td class="code">(.*?)</td>', html, flags=re.S)
    assert cells
    for cell in cells:
        assert "\n" not in cell
        assert re.sub(r'<span class="marker">.</span>', "", cell).startswith("  indented")
