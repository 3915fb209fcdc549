"""Print the built HTML book to one PDF: ``make pdf`` writes ``_build/pdf/book.pdf``.

The route, and why: Sphinx's LaTeX builder would need a TeX installation of several
hundred megabytes, and its single-page HTML builder fails on folded code cells. Instead,
headless Chromium (the OS package, driven through Playwright's Python API; nothing is
downloaded) prints every page of the built site, in the order of ``_toc.yml``, with the
book's print style sheet (``book/_static/rnngrad-print.css``), after MathJax has typeset
every equation and every image has loaded; poppler's ``pdfunite`` then joins the pages
behind a title page and a table of contents with page numbers, and pypdf adds a bookmark
for every part and chapter, and the book's title and authors.

What a reader of paper gets: no sidebars, buttons or search; exercise solutions printed
in full; folded code cells left folded (as on the web page) and shown code wrapped;
links to other chapters as plain text, citations and equation numbers as on the page;
interactive figures as their static image of the same measurements; page numbers that
run through the whole book, and the chapter's title at the top of each page.

Needs ``make book`` first, Chromium (``/usr/bin/chromium``, or ``RNNGRAD_CHROMIUM``) and
poppler-utils (``pdfunite``, ``pdfinfo``). Run: ``python book/_ext/make_pdf.py``. The site
links the PDF only once it is built again (``make pdf`` does both): the build offers the
link on every page, and copies the PDF next to them, only when ``_build/pdf/book.pdf``
exists (``book/_ext/rnngrad_site.py``).
"""

from __future__ import annotations

import argparse
import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
OUT = ROOT / "_build" / "pdf" / "book.pdf"
CHROMIUM = os.environ.get("RNNGRAD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
MARGIN = {"top": "18mm", "bottom": "18mm", "left": "16mm", "right": "16mm"}
PAPER = {"format": "A4", "margin": MARGIN}

# Run in each page before printing: wait for MathJax and the images, make links to other
# pages plain text (they cannot work inside one PDF), and return the page's title.
PREPARE = """async () => {
    // MathJax loads asynchronously: on a slow machine its startup may not exist yet
    const ready = () => window.MathJax && MathJax.startup && MathJax.startup.promise;
    for (let i = 0; i < 600 && window.MathJax && !ready(); i++) {
        await new Promise(done => setTimeout(done, 100));
    }
    if (ready()) {
        await MathJax.startup.promise;
    }
    await Promise.all([...document.images].map(i => i.complete ? null :
        new Promise(done => { i.onload = i.onerror = done; })));
    const here = location.origin + location.pathname;
    for (const a of [...document.querySelectorAll('main a[href]')]) {
        const url = new URL(a.href, location.href);
        if (url.origin !== location.origin) continue;          // external: keep
        if (url.origin + url.pathname === here && url.hash) continue;  // same page: keep
        a.removeAttribute('href');
        a.classList.add('rnngrad-print-unlinked');
    }
    const errors = document.querySelectorAll('mjx-merror, .MathJax_Error').length;
    return {mathErrors: errors,
            math: document.querySelectorAll('mjx-container').length,
            images: document.querySelectorAll('main img').length};
}"""


def toc_pages(toc_file: Path = ROOT / "_toc.yml") -> list[dict]:
    """The book's pages in reading order: ``[{"doc": "book/intro", "part": caption}, ...]``."""
    toc = yaml.safe_load(toc_file.read_text(encoding="utf-8"))
    pages = [{"doc": toc["root"], "part": None, "numbered": False}]

    def walk(entries: list[dict], part: str | None, numbered: bool) -> None:
        for entry in entries:
            if "file" in entry:
                pages.append({"doc": entry["file"], "part": part, "numbered": numbered})
            walk(entry.get("sections", []), part, numbered)

    for part in toc.get("parts", []):
        walk(part.get("chapters", []), part.get("caption"), bool(part.get("numbered")))
    walk(toc.get("chapters", []), None, bool(toc.get("numbered")))
    return pages


def page_title(site: Path, doc: str) -> str:
    """The text of a built page's first ``<h1>`` (its section number included)."""
    text = (site / f"{doc}.html").read_text(encoding="utf-8")
    headings = re.findall(r"<h1[^>]*>(.*?)</h1>", text, flags=re.S)
    if not headings:
        raise RuntimeError(f"{doc}.html has no <h1>")
    # the theme's print header comes first, without the number: take the page's own
    inner = re.sub(r'<a class="headerlink".*?</a>', "", headings[-1], flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", inner)).strip()


def pdf_page_count(path: Path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True)
    for line in info.stdout.splitlines():
        if line.startswith("Pages:"):
            return int(line.split()[1])
    raise RuntimeError(f"pdfinfo gave no page count for {path}")


def _css_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _page_style(first_number: int, running_title: str) -> str:
    """Page numbers that continue through the book, and the chapter title on top."""
    return (
        f"html{{counter-reset:page {first_number - 1}}}"
        "@page{"
        f"@top-left{{content:{_css_string(running_title)};"
        "font:8.5pt system-ui,sans-serif;color:#666}"
        "@bottom-center{content:counter(page);font:9pt system-ui,sans-serif;color:#444}}"
    )


def front_matter(title: str, author: str, entries: list[dict]) -> str:
    """The title page and the table of contents, as one HTML document."""
    rows, part = [], None
    for entry in entries:
        if entry["part"] != part and entry["part"]:
            part = entry["part"]
            rows.append(f'<tr class="part"><td colspan="2">{html.escape(part)}</td></tr>')
        rows.append(
            f'<tr><td class="entry">{html.escape(entry["title"])}</td>'
            f'<td class="page">{entry["page"]}</td></tr>'
        )
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>
@page {{ size: A4; margin: 18mm 16mm; }}
@page :first {{ margin: 0; }}
html {{ counter-reset: page 0; }}
@page :not(:first) {{ @bottom-center {{ content: counter(page);
    font: 9pt system-ui, sans-serif; color: #444; }} }}
body {{ font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif;
    color: #222; margin: 0; }}
.title {{ height: 297mm; box-sizing: border-box; padding: 80mm 24mm 0;
    break-after: page; }}
.title h1 {{ font-size: 30pt; line-height: 1.2; margin: 0 0 10mm; font-weight: 600; }}
.title p {{ font-size: 13pt; margin: 0 0 4mm; color: #444; }}
.title .note {{ margin-top: 60mm; font-size: 10pt; color: #666; max-width: 130mm; }}
h2 {{ font-size: 18pt; font-weight: 600; margin: 0 0 8mm; }}
table {{ width: 100%; border-collapse: collapse; font-size: 11pt; }}
td {{ padding: 1.6mm 0; vertical-align: bottom; }}
td.entry {{ padding-right: 6mm; }}
td.page {{ text-align: right; width: 14mm; }}
tr.part td {{ padding-top: 5mm; font-weight: 600; color: #555; font-size: 10pt;
    text-transform: uppercase; letter-spacing: 0.04em; }}
</style></head><body>
<section class="title"><h1>{html.escape(title)}</h1><p>{html.escape(author)}</p>
<p class="note">Printed from the book's web pages, built by executing every chapter's
notebook: every number and figure comes from the code that ran. Interactive figures appear
as static images of the same measurements. The notebooks and the <code>rnngrad</code>
package are in the book's repository.</p></section>
<section><h2>Contents</h2><table>{"".join(rows)}</table></section>
</body></html>"""


def add_bookmarks(
    source: Path, target: Path, pages: list[dict], *, title: str, author: str
) -> None:
    """Copy ``source`` to ``target`` with a bookmark per part and chapter, and metadata.

    ``pdfunite`` keeps neither the pages' outlines nor a title; a reader of a long PDF
    navigates by the bookmarks.
    """
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=str(source))
    writer.add_outline_item("Contents", 1)
    parts: dict[str, object] = {}
    for page in pages:
        parent = None
        if page["part"]:
            if page["part"] not in parts:
                parts[page["part"]] = writer.add_outline_item(page["part"], page["page"] - 1)
            parent = parts[page["part"]]
        writer.add_outline_item(page["title"], page["page"] - 1, parent=parent)
    writer.add_metadata({"/Title": title, "/Author": author})
    writer.page_mode = "/UseOutlines"
    with target.open("wb") as stream:
        writer.write(stream)


def _serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def build(site: Path = SITE, out: Path = OUT) -> dict:
    """Print every page of ``site`` and join them into ``out``; returns a summary."""
    from playwright.sync_api import sync_playwright

    if not (site / "index.html").exists():
        raise SystemExit(f"no built site at {site}: run `make book` first")
    for tool in ("pdfunite", "pdfinfo"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install poppler-utils")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    pages = toc_pages()
    for page in pages:
        if not (site / f"{page['doc']}.html").exists():
            raise SystemExit(f"{page['doc']}.html is missing from the built site")
    start = time.perf_counter()
    server, base = _serve(site)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rnngrad-pdf-", dir=out.parent))
    problems: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            tab = browser.new_page(viewport={"width": 900, "height": 1200})
            tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))

            # The contents' length does not depend on the page numbers: print it once
            # with placeholders to learn where the first chapter starts.
            for page in pages:
                page["title"] = page_title(site, page["doc"])
            placeholder = [dict(p, page=999) for p in pages]
            front = work / "000-front.pdf"
            tab.set_content(front_matter(config["title"], config["author"], placeholder))
            tab.pdf(path=str(front), prefer_css_page_size=True, print_background=True)
            next_page = pdf_page_count(front) + 1

            tab.emulate_media(media="print")
            for k, page in enumerate(pages, start=1):
                tab.goto(base + f"{page['doc']}.html", wait_until="networkidle")
                page.update(tab.evaluate(PREPARE))
                if page["mathErrors"]:
                    problems.append(f"{page['doc']}: {page['mathErrors']} MathJax errors")
                tab.add_style_tag(content=_page_style(next_page, page["title"]))
                target = work / f"{k:03d}-{Path(page['doc']).name}.pdf"
                tab.pdf(path=str(target), print_background=True, outline=True, **PAPER)
                page["page"], page["file"] = next_page, target
                page["pages"] = pdf_page_count(target)
                next_page += page["pages"]

            tab.emulate_media(media="screen")
            tab.set_content(front_matter(config["title"], config["author"], pages))
            tab.pdf(path=str(front), prefer_css_page_size=True, print_background=True)
            if pdf_page_count(front) != pages[0]["page"] - 1:
                raise RuntimeError("the table of contents changed length with its numbers")
            browser.close()
        files = [str(front)] + [str(p["file"]) for p in pages]
        joined = work / "joined.pdf"
        subprocess.run(["pdfunite", *files, str(joined)], check=True)
        add_bookmarks(joined, out, pages, title=config["title"], author=config["author"])
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "pdf": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out),
        "pages": pdf_page_count(out),
        "seconds": round(time.perf_counter() - start, 1),
        "chapters": [
            {k: p[k] for k in ("doc", "title", "page", "pages", "math", "images")} for p in pages
        ],
        "problems": problems,
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 if a page had a MathJax or script error"
    )
    args = parser.parse_args(argv)
    summary = build()
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for chapter in summary["chapters"]:
            print(f"  p. {chapter['page']:>3}  {chapter['title']} ({chapter['pages']} pages)")
        print(f"{summary['pdf']}: {summary['pages']} pages in {summary['seconds']} s")
        print("build the site again to link it from every page (`make pdf` does)")
    for problem in summary["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    # The site test checks every page for these too (with its list of known failures).
    return 1 if args.strict and summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
