"""Real browser tests: Playwright drives the system Chromium against a live server.

They check what only a browser shows: the live preview and the unsaved-changes guard (JS), an edit
conflict from two browsers, keyboard access, the dark theme, and no console errors or CSP
violations on the main pages. Screenshots land in /tmp/shots for a human to look at.
Skipped when Chromium or Playwright is missing, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import PASSWORD
from wiki import create_app, editing
from wiki.extensions import db as _db

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CI = os.environ.get("CI", "").lower() == "true"
SHOTS = Path(os.environ.get("WIKI_SHOTS_DIR", "/tmp/shots"))
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000

PAGE_BODY = """Intro paragraph about queues.

## Setup

| Broker | Port |
| --- | ---: |
| RabbitMQ | 5672 |
| Redis | 6379 |

```python
def handler(message):
    return message.upper()
```

## Usage

See [[Missing Topic]] for more.

## Notes

!!! tip
    Keep handlers idempotent.
"""


MAIN_BODY = """Welcome to the hub. Start with [[Message Queues]].

```python
print("hello")
```
"""


def _unavailable(reason: str) -> None:
    if CI:
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """One headless Chromium for the module (launching it is the slow part)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _unavailable(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def live(app, settings, make_page) -> Iterator[str]:
    """The wiki served over HTTP from a thread, on the same database as the `app` fixture."""
    make_page("Main Page", MAIN_BODY, tags="start")
    served = create_app(settings)
    server = make_server("127.0.0.1", 0, served, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _db.session.commit()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    with served.app_context():
        _db.engine.dispose()


class Tab:
    """A browser page that records console errors and CSP violations."""

    def __init__(self, context, base: str) -> None:
        self.base = base
        self.context = context
        context.add_init_script(
            "window.__csp = [];"
            "document.addEventListener('securitypolicyviolation',"
            " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        self.page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.expected_status: dict[str, int] = {}
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _console(self, message) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        status = self.expected_status.get(url)
        if status and message.text.startswith(
            f"Failed to load resource: the server responded with a status of {status}"
        ):
            return  # the error page we asked for, not a broken asset
        self.errors.append(f"{message.text} ({url})")

    def go(self, path: str, status: int = 200):
        """Open a page, expect its HTTP status, and check it loaded without errors."""
        if status != 200:
            self.expected_status[self.base + path] = status
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == status, (path, response)
        self.check_clean()
        return response

    def check_clean(self) -> None:
        """No console errors and no CSP violations so far."""
        violations = self.page.evaluate("window.__csp || []")
        assert violations == [], f"CSP violations on {self.page.url}: {violations}"
        assert self.errors == [], f"console errors on {self.page.url}: {self.errors}"

    def login(self, username: str, password: str = PASSWORD) -> None:
        self.go("/auth/login")
        self.page.fill("#username", username)
        self.page.fill("#password", password)
        self.page.click("form.stack button[type=submit]")
        self.page.wait_for_selector(f"text=Logged in as {username}")

    def shot(self, name: str, full_page: bool = False) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


@pytest.fixture
def tab_factory(browser, live) -> Iterator:
    """Open isolated browser tabs (own cookies); each is checked for errors when closed."""
    contexts = []

    def open_tab(**options) -> Tab:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
        contexts.append(context)
        return Tab(context, live)

    yield open_tab
    for context in contexts:
        context.close()


@pytest.fixture
def tab(tab_factory) -> Tab:
    return tab_factory()


def test_register_then_log_out_and_in(tab):
    tab.go("/auth/register")
    page = tab.page
    page.fill("#username", "newcomer")
    page.fill("#email", "newcomer@example.org")
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_selector("text=Welcome, newcomer!")
    assert page.locator(".user-nav").get_by_text("newcomer").is_visible()

    page.click(".user-nav button.link-button")
    page.wait_for_selector("text=You are logged out.")
    assert page.locator(".user-nav a", has_text="Log in").is_visible()

    tab.login("newcomer")
    assert page.locator(".user-nav").get_by_text("Log out").is_visible()
    tab.check_clean()


def test_create_page_with_live_preview(tab, admin):
    tab.login(admin.username)
    page = tab.page
    tab.go("/new")
    page.fill("#title", "Message Queues")
    body = page.locator("textarea[name=body]")
    body.click()
    page.keyboard.type("## Live heading\n\nTyped **bold** text.")
    preview = page.locator("#live-preview")
    preview.locator("h2", has_text="Live heading").wait_for()
    assert preview.locator("strong", has_text="bold").is_visible()
    assert page.evaluate("document.querySelector('form#editor').dataset.dirty") == "true"

    body.fill(PAGE_BODY)
    body.press("End")
    preview.locator("table").wait_for()
    tab.shot("editor")
    page.fill("#summary", "First version")
    page.click("form#editor [name=save]")
    page.wait_for_url(re.compile(r"/wiki/message-queues$"))
    content = page.locator(".markdown-body")
    assert content.locator("table td", has_text="RabbitMQ").is_visible()
    assert content.locator(".highlight pre .k", has_text="def").count() == 1
    assert content.locator("a.wikilink.new", has_text="Missing Topic").is_visible()
    assert page.locator("nav.toc").get_by_text("Setup").is_visible()
    tab.check_clean()


def test_editor_guards_unsaved_changes(tab, admin, make_page):
    make_page("Guarded", "Original text.\n")
    tab.login(admin.username)
    page = tab.page
    tab.go("/wiki/guarded/edit")
    assert page.evaluate("document.querySelector('form#editor').dataset.dirty") == "false"
    page.locator("textarea[name=body]").click()
    page.keyboard.press("End")
    page.keyboard.type(" More.")
    assert page.evaluate("document.querySelector('form#editor').dataset.dirty") == "true"

    with page.expect_event("dialog") as asked:
        page.close(run_before_unload=True)
    assert asked.value.type == "beforeunload"
    asked.value.dismiss()  # stay on the page
    assert not page.is_closed(), "dismissing the prompt keeps the editor open"

    # Saving is not "leaving with unsaved changes": no prompt, and the text is saved.
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.type), d.dismiss()))
    page.click("form#editor [name=save]")
    page.wait_for_url(re.compile(r"/wiki/guarded$"))
    assert page.locator(".markdown-body").get_by_text("Original text. More.").is_visible()
    assert dialogs == []


def test_history_compare_shows_changed_words(tab, admin, make_page):
    page_row = make_page("Compared", "The quick brown fox.\nSecond line.\n")
    editing.save(
        admin,
        title="Compared",
        body="The quick red fox.\nSecond line.\n",
        summary="colour change",
        page=page_row,
        base_revision_id=page_row.current_revision_id,
    )
    _db.session.commit()
    tab.go("/wiki/compared/history")
    page = tab.page
    assert page.locator("table.history tbody tr").count() == 2
    page.click("text=Compare selected revisions")
    page.wait_for_url(re.compile(r"/wiki/compared/diff\?"))
    assert page.locator("table.diff del", has_text="brown").is_visible()
    assert page.locator("table.diff ins", has_text="red").is_visible()
    assert page.get_by_text("colour change").is_visible()
    tab.shot("diff")
    page.click(".diff-toolbar >> text=Side by side")
    assert page.locator("table.diff-split ins", has_text="red").is_visible()
    tab.check_clean()


def test_edit_conflict_from_two_browsers_loses_nothing(tab_factory, admin, reviewer, make_page):
    make_page("Shared", "Line one.\nLine two.\n")
    first, second = tab_factory(), tab_factory()
    first.login(admin.username)
    second.login(reviewer.username)
    first.go("/wiki/shared/edit")
    second.go("/wiki/shared/edit")

    first.page.fill("textarea[name=body]", "Line one, by the first.\nLine two.\n")
    first.page.click("form#editor [name=save]")
    first.page.wait_for_url(re.compile(r"/wiki/shared$"))

    mine = "Line one, by the second.\nLine two.\n"
    second.page.fill("textarea[name=body]", mine)
    second.page.click("form#editor [name=save]")
    page = second.page
    page.wait_for_selector(".banner-error")
    assert "Someone else changed this page" in page.locator(".banner-error").inner_text()
    assert page.locator("section.conflict").is_visible()
    assert page.input_value("textarea[name=body]").replace("\r\n", "\n") == mine

    # Nothing was lost: the first person's text is live, and the second can still save theirs.
    first.go("/wiki/shared")
    assert first.page.get_by_text("Line one, by the first.").is_visible()
    page.click("form#editor [name=save]")
    page.wait_for_url(re.compile(r"/wiki/shared$"))
    assert page.get_by_text("Line one, by the second.").is_visible()


def test_keyboard_reaches_skip_link_first_with_visible_focus(tab):
    tab.go("/special/recent")
    page = tab.page
    page.keyboard.press("Tab")
    focused = page.evaluate(
        """() => {
            const el = document.activeElement;
            const style = getComputedStyle(el);
            const box = el.getBoundingClientRect();
            return {
                cls: el.className, visible: el.matches(':focus-visible'),
                outline: style.outlineStyle, width: parseFloat(style.outlineWidth),
                onScreen: box.bottom > 0 && box.top < innerHeight && box.height > 0,
            };
        }"""
    )
    assert focused["cls"] == "skip-link"
    assert focused["visible"] and focused["onScreen"]
    assert focused["outline"] != "none" and focused["width"] >= 2
    page.keyboard.press("Enter")
    assert page.url.endswith("#content")
    # The next Tab stops are the header's controls, each with a visible focus ring.
    page.keyboard.press("Tab")
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert ring != "none"


def _luminance(rgb: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", rgb)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_theme_follows_system_setting(tab_factory):
    for scheme, dark in (("dark", True), ("light", False)):
        tab = tab_factory(color_scheme=scheme)
        tab.go("/wiki/main-page")
        colours = tab.page.evaluate(
            """() => ({
                body: getComputedStyle(document.body).backgroundColor,
                text: getComputedStyle(document.body).color,
                code: getComputedStyle(document.querySelector('.highlight')).backgroundColor,
            })"""
        )
        assert (_luminance(colours["body"]) < 0.2) is dark, (scheme, colours)
        assert (_luminance(colours["text"]) > 0.6) is dark, (scheme, colours)
        assert (_luminance(colours["code"]) < 0.2) is dark, (scheme, colours)
        if dark:
            tab.shot("main-page-dark")


def test_main_pages_have_no_console_errors_and_look_right(tab, admin, contributor, make_page):
    topic = make_page("Message Queues", PAGE_BODY, tags="queues python")
    editing.save(
        contributor,
        title="Message Queues",
        body=PAGE_BODY + "\nA proposed addition.\n",
        summary="add a line",
        page=topic,
        base_revision_id=topic.current_revision_id,
    )
    _db.session.commit()
    tab.go("/wiki/main-page")
    tab.shot("main-page")
    tab.go("/wiki/message-queues")
    assert tab.page.locator("nav.toc").is_visible()
    tab.shot("page-with-code-table-toc", full_page=True)
    for path in ("/special/all", "/special/recent", "/auth/register"):
        tab.go(path)
    tab.go("/wiki/no-such-page", status=404)

    tab.login(admin.username)
    tab.go("/review/")
    assert tab.page.locator("table.queue").get_by_text("add a line").is_visible()
    tab.shot("review-queue")
    tab.page.click("table.queue >> text=add a line")
    tab.page.wait_for_selector("text=Discussion and decisions")
    tab.check_clean()
    tab.go("/wiki/message-queues/history")
    tab.go("/wiki/message-queues/edit")
    tab.page.locator("#live-preview table").wait_for()
    tab.check_clean()
    tab.go("/admin/users")
