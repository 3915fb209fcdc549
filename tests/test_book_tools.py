"""The book's build tools in book/_ext: the PDF's page order, contents and page style."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "book" / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


make_pdf = _load("make_pdf")


def test_the_pdf_follows_the_table_of_contents_and_misses_no_page():
    pages = make_pdf.toc_pages()
    docs = [p["doc"] for p in pages]
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert docs == listed
    assert len(set(docs)) == len(docs)
    numbered = {p["doc"] for p in pages if p["numbered"]}
    assert "book/bptt" in numbered and "book/intro" not in numbered
    assert "book/how_to_read" not in numbered and "book/glossary" not in numbered
    assert docs[1] == "book/how_to_read"  # right after the introduction


def test_toc_pages_reads_sections_and_plain_chapters(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: a\nchapters:\n  - file: b\n    sections:\n      - file: c\n"
    )
    assert [p["doc"] for p in make_pdf.toc_pages(toc)] == ["a", "b", "c"]


def test_page_title_takes_the_pages_own_numbered_heading(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "x.html").write_text(
        '<div id="jb-print-docs-body"><h1>Gating</h1></div><section>'
        '<h1><span class="section-number">7. </span>Gating: LSTM &amp; GRU'
        '<a class="headerlink" href="#g" title="Link">#</a></h1></section>'
    )
    assert make_pdf.page_title(tmp_path, "book/x") == "7. Gating: LSTM & GRU"


def test_front_matter_lists_parts_and_pages_and_escapes_titles():
    entries = [
        {"title": "Introduction", "part": None, "page": 3},
        {"title": "1. A <b> & c", "part": "The mechanism", "page": 11},
    ]
    page = make_pdf.front_matter("Book", "Authors", entries)
    assert '1. A &lt;b&gt; &amp; c</td><td class="page">11' in page
    assert page.index("The mechanism") < page.index("1. A &lt;b&gt;")
    assert "<h1>Book</h1>" in page and "Authors" in page


def test_page_style_numbers_from_the_given_page_and_quotes_the_title():
    style = make_pdf._page_style(42, 'The "cliff" \\ wall')
    assert "counter-reset:page 41" in style
    assert 'content:"The \\"cliff\\" \\\\ wall"' in style


site = _load("rnngrad_site")


def test_glued_e_notation_reads_as_a_power_of_ten():
    from docutils import nodes

    assert site.scientific("2.8e-08") == ("2.8", "−8")
    assert site.scientific("-1.5e+03") == ("−1.5", "3")
    assert site.scientific("1.0e+00") == ("1.0", "0")
    for text in ("0.25", "nan", "2.8e-08 steps", "e-08", "-0.264"):
        assert site.scientific(text) is None, text

    def pasted(text):
        return nodes.inline(text, text, classes=["pasted-text"])

    paragraph = nodes.paragraph()
    paragraph += [pasted("2.8e-08"), pasted("-0.264"), pasted("1.0e+00")]
    paragraph += nodes.inline("3.0e-05", "3.0e-05")  # not glued: left alone
    document = nodes.document(None, None)
    document += paragraph
    site._scientific_glue(None, document, "page")
    first, second, third, plain = paragraph.children
    assert first.astext() == "2.8\u00a0×\u00a010−8"
    assert isinstance(first.children[-1], nodes.superscript)
    assert second.astext() == "-0.264" and third.astext() == "1.0"
    assert plain.astext() == "3.0e-05"
