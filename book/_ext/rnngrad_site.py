"""Sphinx tweaks for the rnngrad book's HTML.

- Jupyter Book 1 always loads sphinx-thebe, which registers its inline configuration
  script once per read pass; with notebook execution that can happen twice, and the
  browser then reports "Identifier 'THEBE_JS_URL' has already been declared". It also
  writes into every page a Binder configuration naming a repository that has nothing to
  do with the book (sphinx-thebe's default, binder-examples/jupyter-stacks-datascience).
  The book has no live-code or launch buttons (nothing to launch them from), so thebe's
  scripts, style sheet and per-page configuration are all dropped: this also keeps a
  remote address (unpkg.com) out of every page.
- Interactive figures (:mod:`rnngrad.experiments.interactive`) need plotly.js. The copy
  that ships in the installed ``plotly`` package is copied into the site's ``_static``
  folder, with its licence, and loaded only by the pages that hold such a figure: no
  CDN, so the figures work offline and from disk.
- The book's print style sheet (``book/_static/rnngrad-print.css``) is added to every page:
  it is what ``make pdf`` prints with, and what a reader gets printing a page.
- Every page's download menu offers the whole book as a PDF (``book.pdf`` at the site's
  root), but only when there is one: ``make pdf`` prints it to ``_build/pdf/book.pdf``
  from the built site, and the build offers the link only if that file exists when it
  runs, and copies it into the site. The same condition sets the Sphinx tag
  ``rnngrad_pdf``, for text that links the PDF (``{only} rnngrad_pdf``, resolved when
  the pages are written). Whether it exists is an HTML-only configuration
  value, so the build after ``make pdf`` (the last step of ``make pdf`` itself) rewrites
  every page with the link, and one after the PDF was removed rewrites them without it:
  a plain ``make book`` never links a PDF it did not make.
- Glued numbers in Python's e-notation (``{glue:text}`name:.1e``` gives "2.8e-08") are
  shown as a reader writes them, "2.8 × 10⁻⁸" (a superscript exponent, a true minus
  sign, no break inside the number), in the HTML and so in the PDF printed from it.
- Wide figures on a phone scroll sideways in their own box (``chapters.css``);
  ``book/_static/rnngrad-scroll.js`` marks the boxes that do, so that the style sheet can
  show it (a fade at the hidden edge, a "scroll →" hint).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

PLOTLY_JS = "plotly.min.js"
BOOK_PDF = "book.pdf"
# where `make pdf` (book/_ext/make_pdf.py) writes the PDF, relative to the book's root
PDF_SOURCE = Path("_build") / "pdf" / BOOK_PDF
PDF_TAG = "rnngrad_pdf"  # set when there is a PDF to link
SCROLL_JS = "rnngrad-scroll.js"
INTERACTIVE_CLASS = "rnngrad-interactive"


def _drop_thebe_scripts(
    app: Any, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    def is_thebe(script: Any) -> bool:
        filename = str(getattr(script, "filename", "") or "")
        body = str(getattr(script, "attributes", {}).get("body", ""))
        return "thebe" in filename or "THEBE_JS_URL" in body

    if "script_files" in context:  # in place: later handlers may add scripts to this list
        context["script_files"][:] = [s for s in context["script_files"] if not is_thebe(s)]
    if "css_files" in context:
        context["css_files"][:] = [
            c for c in context["css_files"] if "thebe" not in str(getattr(c, "filename", c))
        ]


def _drop_thebe_config(app: Any, doctree: Any, docname: str) -> None:
    """Remove the Binder configuration sphinx-thebe appends to every page."""
    from docutils import nodes

    for node in list(doctree.findall(nodes.raw)):
        text = node.astext()
        if "x-thebe-config" in text or text.strip().startswith("<script>kernelName"):
            node.parent.remove(node)


# Python's format spec "e": an optional sign, a mantissa, "e", a signed exponent.
_E_NOTATION = re.compile(r"(-?\d+(?:\.\d+)?)e([+-]\d+)")
MINUS = "\u2212"


def scientific(text: str) -> tuple[str, str] | None:
    """("2.8", "-8") for "2.8e-08": the mantissa and the exponent, the exponent with a
    true minus sign; None for text that is not one number in e-notation.

    >>> scientific("2.8e-08"), scientific("-1.5e+03"), scientific("0.25")
    (('2.8', '−8'), ('−1.5', '3'), None)
    """
    match = _E_NOTATION.fullmatch(text.strip())
    if match is None:
        return None
    mantissa, exponent = match.group(1), str(int(match.group(2)))
    return mantissa.replace("-", MINUS), exponent.replace("-", MINUS)


def _scientific_glue(app: Any, doctree: Any, docname: str) -> None:
    """Glued numbers in e-notation as "m × 10^e", the exponent a superscript."""
    from docutils import nodes

    for node in list(doctree.findall(nodes.inline)):
        if "pasted-text" not in node.get("classes", []) or len(node.children) != 1:
            continue
        child = node.children[0]
        parts = scientific(child.astext()) if isinstance(child, nodes.Text) else None
        if parts is None:
            continue
        mantissa, exponent = parts
        if exponent == "0":
            node.replace(child, nodes.Text(mantissa))
            continue
        # no-break spaces: the number does not wrap inside itself
        node.replace(child, nodes.Text(f"{mantissa}\u00a0×\u00a010"))
        node.append(nodes.superscript(exponent, exponent))


def _load_plotly_where_needed(
    app: Any, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    # A per-page script, in <head> without defer, so it has run before the figures'
    # inline scripts in the body. Sphinx adds it to the builder's list for this page;
    # the theme may have copied that list into the context already, so make sure the
    # context's list has it too.
    if f'class="{INTERACTIVE_CLASS}"' not in str(context.get("body", "")):
        return
    app.add_js_file(PLOTLY_JS)
    scripts = context.setdefault("script_files", [])
    if not any(str(getattr(s, "filename", s)).endswith(PLOTLY_JS) for s in scripts):
        added = [
            s
            for s in getattr(app.builder, "_js_files", [])
            if str(getattr(s, "filename", s)).endswith(PLOTLY_JS)
        ]
        if not added:
            raise RuntimeError(f"{pagename}: plotly.js could not be added to the page")
        scripts.append(added[-1])


def _pdf_source(app: Any) -> Path:
    return Path(app.srcdir) / PDF_SOURCE


def _note_whether_there_is_a_pdf(app: Any, config: Any) -> None:
    # An HTML-only configuration value: when it changes between two builds, Sphinx
    # rewrites every page (without reading the sources again), so the link comes and
    # goes with the PDF.
    config.rnngrad_book_pdf = _pdf_source(app).is_file()
    if config.rnngrad_book_pdf:
        app.tags.add(PDF_TAG)  # a change of tags rewrites every page too


def _offer_the_book_pdf(
    app: Any, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    pathto = context.get("pathto")
    if pathto is None or not app.config.rnngrad_book_pdf:
        return
    context["rnngrad_book_pdf"] = pathto(BOOK_PDF, 1)
    for button in context.get("header_buttons", []):
        if button.get("label") == "download-buttons":
            button["buttons"].append(
                {
                    "type": "link",
                    "url": pathto(BOOK_PDF, 1),
                    "text": "book (.pdf)",
                    "tooltip": "The whole book as one PDF",
                    "icon": "fas fa-book",
                    "label": "download-book-pdf-button",
                }
            )


def _copy_the_book_pdf(app: Any, exception: Exception | None) -> None:
    """The PDF the pages link, next to them (or none, where the pages link none)."""
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / BOOK_PDF
    if app.config.rnngrad_book_pdf:
        shutil.copyfile(_pdf_source(app), target)
    else:
        target.unlink(missing_ok=True)


def _copy_plotly(app: Any, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    import plotly  # the book's environment has it (rnngrad[book])

    source = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, static / PLOTLY_JS)
    licence = next(Path(plotly.__file__).parent.parent.glob("plotly-*.dist-info/**/LICENSE*"))
    shutil.copyfile(licence, static / "plotly.LICENSE.txt")


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("rnngrad_book_pdf", False, "html", types=[bool])
    app.connect("config-inited", _note_whether_there_is_a_pdf)
    app.connect("doctree-resolved", _drop_thebe_config, priority=900)  # after sphinx-thebe
    app.connect("doctree-resolved", _scientific_glue, priority=900)  # glue is resolved
    app.connect("html-page-context", _drop_thebe_scripts)
    app.connect("html-page-context", _load_plotly_where_needed)
    # after sphinx-book-theme has built the page's buttons (its handler has priority 500)
    app.connect("html-page-context", _offer_the_book_pdf, priority=900)
    app.connect("build-finished", _copy_plotly)
    app.connect("build-finished", _copy_the_book_pdf)
    app.add_css_file("rnngrad-print.css", media="print")
    app.add_js_file(SCROLL_JS, loading_method="defer")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
