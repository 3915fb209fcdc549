"""The built site in a real browser: every page loads clean, renders its math and images,
every internal link resolves, and search works.

Needs the built HTML (``make book``) and Chromium from the OS (``/usr/bin/chromium``;
Playwright's own browser downloads are not used). Without a browser the test is skipped
with a reason, unless the ``CI`` environment variable is set: then it fails.
Run with ``make site-test``.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
CHROMIUM = os.environ.get("RNNGRAD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Console messages that are not errors of the book. Each entry says why it is allowed.
ALLOWED_CONSOLE = (
    # The browser asks the server for /favicon.ico; the book ships no favicon.
    "favicon.ico",
    # pydata-sphinx-theme logs this on a first visit, before it has stored a light/dark
    # choice in localStorage; it then uses "auto", which is what the book wants.
    "Got invalid theme mode",
)
TEX_DELIMITERS = ("\\(", "\\)", "\\[", "\\]", "$$")


def _require(condition: bool, reason: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is a failure)")
        pytest.skip(reason)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # no access log in test output
        pass


@pytest.fixture(scope="module")
def server():
    _require((SITE / "index.html").exists(), f"no built site at {SITE}: run `make book` first")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    _require(Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


def _pages() -> list[str]:
    if not SITE.exists():
        return []
    skip = ("_static", "_sources", "_images", "genindex", "search", "_modules")
    return sorted(
        str(p.relative_to(SITE))
        for p in SITE.rglob("*.html")
        if not any(part.startswith(skip) for part in p.relative_to(SITE).parts)
        and p.name != "index.html"  # a redirect to the first chapter
    )


@pytest.mark.parametrize("page", _pages() or ["(no site built)"])
def test_page_renders_cleanly(server, browser, page):
    _require(page != "(no site built)", "no built site: run `make book` first")
    tab = browser.new_page()
    problems: list[str] = []

    def on_console(message) -> None:
        where = f"{message.text} ({message.location.get('url', '')})"
        if message.type == "error" and not any(a in where for a in ALLOWED_CONSOLE):
            problems.append(f"console error: {where}")

    def on_response(response) -> None:
        if response.status >= 400 and not any(a in response.url for a in ALLOWED_CONSOLE):
            problems.append(f"HTTP {response.status}: {response.url}")

    tab.on("console", on_console)
    tab.on("response", on_response)
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    url = urljoin(server, page)
    tab.goto(url, wait_until="networkidle")
    tab.wait_for_function("() => !window.MathJax || (MathJax.startup && MathJax.startup.promise)")
    tab.evaluate("() => window.MathJax && MathJax.startup.promise")

    broken_images = tab.evaluate(
        "() => [...document.images]"
        ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
    )
    assert not broken_images, f"{page}: images that did not load: {broken_images}"
    no_alt = tab.evaluate(
        "() => [...document.querySelectorAll('main img')]"
        ".filter(i => !(i.alt || '').trim()).map(i => i.src)"
    )
    assert not no_alt, f"{page}: images without alt text: {no_alt}"

    # Math: after MathJax has run, no TeX delimiters remain in the prose (code is exempt).
    prose = tab.evaluate(
        """() => {
            const main = document.querySelector('main') || document.body;
            const copy = main.cloneNode(true);
            copy.querySelectorAll('pre, code, .highlight, mjx-container, script, style')
                .forEach(e => e.remove());
            return copy.innerText;
        }"""
    )
    raw = [d for d in TEX_DELIMITERS if d in prose]
    assert not raw, f"{page}: unrendered TeX delimiters {raw} in the text"

    # Internal links: every target file exists, and every #anchor exists on its page.
    links = tab.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
    for link in links:
        target, anchor = urldefrag(link)
        if not target.startswith(server):
            continue
        path = SITE / unquote(urlparse(target).path.lstrip("/"))
        if path.is_dir():
            path = path / "index.html"
        assert path.exists(), f"{page}: broken link {link}"
        if anchor and path.suffix == ".html":
            html = path.read_text(encoding="utf-8", errors="replace")
            assert f'id="{anchor}"' in html, f"{page}: link to a missing anchor {link}"
    tab.close()
    assert not problems, f"{page}: " + "; ".join(problems)


def test_search_finds_clipping(server, browser):
    tab = browser.new_page()
    tab.goto(urljoin(server, "search.html?q=clipping"), wait_until="networkidle")
    tab.wait_for_selector("#search-results li", timeout=15_000)
    results = tab.locator("#search-results li").count()
    tab.close()
    assert results >= 1


def test_site_opens_from_disk_with_math(browser):
    """A reader can open the HTML files directly, with no server and no network."""
    pages = [p for p in _pages() if "bptt" in p]
    _require(bool(pages), "no built site: run `make book` first")
    tab = browser.new_page()
    tab.goto((SITE / pages[0]).as_uri(), wait_until="load")
    tab.evaluate("() => MathJax.startup.promise")
    rendered = tab.locator("mjx-container").count()
    tab.close()
    assert rendered > 10


def test_every_chapter_page_offers_its_notebook_for_download():
    _require((SITE / "index.html").exists(), f"no built site at {SITE}: run `make book` first")
    chapters = sorted((ROOT / "book").glob("*.ipynb"))
    assert chapters
    for notebook in chapters:
        page = SITE / "book" / f"{notebook.stem}.html"
        assert page.exists(), f"{notebook.name} has no page in the built site"
        link = f"_sources/book/{notebook.name}"
        assert link in page.read_text(encoding="utf-8"), f"{page.name} offers no {notebook.name}"
        assert (SITE / link).read_bytes() == notebook.read_bytes()  # the notebook as stored
