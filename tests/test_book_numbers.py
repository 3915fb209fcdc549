"""No typed results: every number in a chapter's prose that looks like a result is glued.

Issue 12, item 3. A chapter's numbers come from the code that runs in it (``myst_nb.glue``
and ``{glue:text}`` roles). This test scans the markdown of every chapter (the markdown
cells of ``book/*.ipynb`` and the ``book/*.md`` pages, except the API reference, the
bibliography, the glossary and the execution report) for numbers that look like results:

- decimals (``0.73``), scientific notation (``2.5e-14``, ``10^-3`` written in text),
- percentages (``9 %``, ``9 per cent``), multipliers (``340×``, ``2x``),
- numbers with a thousands separator (``2,700``).

Numbers inside ``{glue}``/``{glue:text}`` and every other role (``{doc}``, ``{cite}``,
``{eq}``, ``{numref}``, ``{term}``, ``{math}``), inside math (``$...$``, ``$$...$$``,
``\\begin{...}``, ``{math}`` blocks), inside code (code spans, fenced code, code cells),
in link targets and bare URLs, in labels and directive options (except ``:alt:`` and
``:caption:``, which readers see), and in section references (``§10.11``) are not
results. Plain integers (32 units, 3 seeds, T = 50, 1994) are not flagged.

A paragraph whose flagged numbers are legitimately typed is marked by a MyST comment line
directly above it:

- ``% typed: parameter``: a setting of the experiment (a learning rate, a tolerance);
- ``% typed: by hand``: a number the text derives by hand (sigma(1) ~ 0.731).

Prefer math for both (``$\\eta = 0.1$``, ``$\\sigma(1) \\approx 0.731$``): it needs no
marker. The page test is parametrized per page, so a failure names the page, the
paragraph and the numbers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOT_CHAPTERS = {"api", "bibliography", "glossary", "execution"}

MARKER = re.compile(r"^\s*%\s*typed:\s*(parameter|by hand)\s*$")
COMMENT = re.compile(r"^\s*%")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,}|:{3,})\s*(?P<info>.*?)\s*$")
DIRECTIVE = re.compile(r"^\{(?P<name>[\w:.-]+)\}\s*(?P<argument>.*)$")
OPTION = re.compile(r"^\s*:(?P<key>[\w-]+):(?P<value>.*)$")

# Directives whose body is code or math, never prose.
CODE_DIRECTIVES = {
    "code",
    "code-block",
    "code-cell",
    "sourcecode",
    "literalinclude",
    "math",
    "glue:math",
    "raw",
    "eval-rst",
    "mermaid",
    "bibliography",
    "toctree",
}
# Directives whose argument is a title a reader sees (elsewhere it is a label, a path, a
# glue key or a language).
TITLED_DIRECTIVES = {
    "admonition",
    "exercise",
    "topic",
    "sidebar",
    "dropdown",
    "card",
    "prf:theorem",
    "prf:definition",
}
# Directive options a reader sees.
VISIBLE_OPTIONS = {"alt", "caption"}

# Masked before numbers are looked for, in this order (each keeps line breaks).
ROLE = re.compile(r"\{[\w:.-]+\}(`+)(?:(?!\1).)*?\1", re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
DISPLAY_MATH = re.compile(r"\$\$.*?\$\$(?:[ \t]*\([\w:.-]+\))?", re.S)
ENVIRONMENT = re.compile(r"\\begin\{(?P<env>[\w*]+)\}.*?\\end\{(?P=env)\}", re.S)
INLINE_MATH = re.compile(r"(?<![\\$])\$(?=\S)(?:\\\$|[^$\n]|\n(?![ \t]*\n))+?(?<=\S)\$(?!\$)")
LINK_TARGET = re.compile(r"\]\([^)\s]*\)")
URL = re.compile(r"<?(?:https?|ftp)://[^\s>)]+>?")
HTML_TAG = re.compile(r"<[^>\n]+>")
TARGET = re.compile(r"^\s*\([\w:.-]+\)=\s*$", re.M)
SECTION_REF = re.compile(
    r"(?:§|\b(?:Sections?|Sec\.|Chapters?|Ch\.|Figures?|Fig\.|Tables?|Eqs?\.|Equations?|"
    r"Algorithms?|Theorems?|Lemmas?|Propositions?|Definitions?|Corollary|Appendix|pp?\.)"
    r"\s?)\s*\d+(?:\.\d+)*"
)
VERSION = re.compile(r"(?<![\w.])v?\d+(?:\.\d+){2,}(?!\w|\.\d)")

# What looks like a result.
PATTERNS = {
    "scientific": re.compile(r"(?<![\w.])\d+(?:\.\d+)?[eE][-+−]?\d+(?!\w|\.\d)"),
    "power of ten": re.compile(
        r"(?<![\w.])10\s*\^\s*\{?\s*[-+−]?\s*\d+|(?<![\w.])10[⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+"
    ),
    "percentage": re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:%|per ?cent\b)"),
    "multiplier": re.compile(
        r"(?<![\w.])\d+(?:[.,]\d+)*\s?[×x](?![\w\d])(?!\s?\d)|(?<![\w\d])(?<!\d\s)×\s?\d+(?:\.\d+)?(?![\w\d×])"
    ),
    "thousands": re.compile(r"(?<![\w.,])\d{1,3}(?:[,\u2009\u202f]\d{3})+(?![\w,]|\.\d)"),
    "decimal": re.compile(r"(?<![\w.])\d*\.\d+(?!\w|\.\d)"),
}


@dataclass(frozen=True)
class Finding:
    """A number that looks like a result, in an unmarked paragraph."""

    line: int  # 1-based, within the markdown text scanned
    kind: str
    number: str
    paragraph: str

    def __str__(self) -> str:
        excerpt = " ".join(self.paragraph.split())
        if len(excerpt) > 160:
            excerpt = excerpt[:157] + "..."
        return f"line {self.line}: {self.kind} {self.number!r} in: {excerpt}"


def _blank_out(match: re.Match) -> str:
    """Replace a match by spaces, keeping its line breaks (so lines keep their numbers)."""
    return re.sub(r"[^\n]", " ", match.group(0))


def _visible_lines(lines: list[str]) -> tuple[list[str], list[bool]]:
    """The text of each line a reader sees as prose, and which lines are code or options.

    Returns the lines with code blocks, non-visible directive options, directive
    arguments that are labels, and fence lines blanked out; and, per line, whether it is
    a separator between paragraphs in the sense of the marker rule (a blank line or a
    comment line).
    """
    visible = list(lines)
    stack: list[tuple[str, int]] = []  # open fences: (character, length)
    in_code: tuple[str, int] | None = None
    in_options = False
    for index, line in enumerate(lines):
        if in_code is not None:
            fence = FENCE.match(line)
            if fence and fence["fence"][0] == in_code[0] and len(fence["fence"]) >= in_code[1]:
                if not fence["info"]:
                    in_code = None
            visible[index] = ""
            continue
        fence = FENCE.match(line)
        if fence:
            mark = fence["fence"]
            info = fence["info"]
            if not info and stack and stack[-1][0] == mark[0] and len(mark) >= stack[-1][1]:
                stack.pop()  # a closing fence
                visible[index] = ""
                in_options = False
                continue
            directive = DIRECTIVE.match(info)
            if directive is None or directive["name"] in CODE_DIRECTIVES:
                in_code = (mark[0], len(mark))  # fenced code (```python, ```{code-cell})
                visible[index] = ""
                continue
            stack.append((mark[0], len(mark)))
            title = directive["name"] in TITLED_DIRECTIVES
            visible[index] = directive["argument"] if title else ""
            in_options = True
            continue
        if in_options:
            option = OPTION.match(line)
            if option:
                visible[index] = option["value"] if option["key"] in VISIBLE_OPTIONS else ""
                continue
            in_options = False
    separators = [not line.strip() or bool(COMMENT.match(line)) for line in lines]
    return visible, separators


def _mask(text: str) -> str:
    """Blank out everything that is not prose: roles, code, math, links, targets."""
    for pattern in (
        ROLE,
        CODE_SPAN,
        DISPLAY_MATH,
        ENVIRONMENT,
        INLINE_MATH,
        LINK_TARGET,
        URL,
        HTML_TAG,
        TARGET,
        SECTION_REF,
        VERSION,
    ):
        text = pattern.sub(_blank_out, text)
    return text


def _numbers(text: str) -> list[tuple[int, str, str]]:
    """``(offset, kind, number)`` for each result-like number, each span counted once."""
    found: list[tuple[int, int, str, str]] = []
    for kind, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < f_end and f_start < end for f_start, f_end, _, _ in found):
                continue  # already reported as a more specific kind
            found.append((start, end, kind, match.group(0).strip()))
    return sorted((start, kind, number) for start, _, kind, number in found)


def typed_numbers(markdown: str) -> list[Finding]:
    """Result-like numbers typed in ``markdown`` outside marked paragraphs.

    Parameters
    ----------
    markdown : str
        MyST markdown (a notebook's markdown cell, or a whole ``.md`` page).

    Returns
    -------
    list of Finding
        One per number, in order. Empty when the text is clean.
    """
    lines = markdown.split("\n")
    visible, separators = _visible_lines(lines)
    masked = _mask("\n".join(visible)).split("\n")
    findings = []
    start = 0
    while start < len(lines):
        if separators[start]:
            start += 1
            continue
        end = start
        while end < len(lines) and not separators[end]:
            end += 1
        marked = start > 0 and bool(MARKER.match(lines[start - 1]))
        if not marked:
            offsets = [0]
            for line in masked[start:end]:
                offsets.append(offsets[-1] + len(line) + 1)
            block = "\n".join(masked[start:end])
            paragraph = "\n".join(lines[start:end])
            for offset, kind, number in _numbers(block):
                line = start + max(i for i, o in enumerate(offsets) if o <= offset)
                findings.append(Finding(line + 1, kind, number, paragraph))
        start = end
    return findings


def chapter_markdown(path: Path) -> list[str]:
    """The markdown a chapter shows: its markdown cells, or the whole ``.md`` page."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    return [path.read_text()]


PAGES = sorted(p for p in [*BOOK.glob("*.ipynb"), *BOOK.glob("*.md")] if p.stem not in NOT_CHAPTERS)

# Chapters whose typed numbers other helpers are converting under issue 12. Each is
# expected to fail until its branch lands; remove a page from this set when it does
# (strict xfail: a page that already passes makes the test fail, as a reminder).
PENDING: set[str] = set()  # pages still being converted; empty: every page is checked


def _page_param(path: Path):
    marks = []
    if path.name in PENDING:
        marks.append(pytest.mark.xfail(strict=True, reason="issue 12: typed numbers pending"))
    return pytest.param(path, id=path.name, marks=marks)


# ----------------------------------------------------------------------------- the pages


@pytest.mark.parametrize("path", [_page_param(p) for p in PAGES])
def test_chapter_has_no_typed_results(path):
    """Issue 12 item 3: every result-like number in a chapter's prose is glued or marked."""
    findings = [str(f) for cell in chapter_markdown(path) for f in typed_numbers(cell)]
    assert not findings, (
        f"{path.name}: numbers typed outside glue, math and code (glue them, put a "
        "derivation or parameter in math, or mark the paragraph with '% typed: parameter' "
        "or '% typed: by hand' on the line above):\n  " + "\n  ".join(findings)
    )


def test_every_chapter_is_scanned():
    names = {p.name for p in PAGES}
    assert {"intro.ipynb", "long_sequences.ipynb", "cheat_sheet.md"} <= names
    assert not names & {f"{stem}.md" for stem in NOT_CHAPTERS}
    assert PENDING <= names, PENDING - names


# ------------------------------------------------------------------ the scanner, unit tests


def kinds(markdown: str) -> list[tuple[str, str]]:
    return [(f.kind, f.number) for f in typed_numbers(markdown)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The ratio is 0.73 here.", [("decimal", "0.73")]),
        ("It fell from 0.61 to .089.", [("decimal", "0.61"), ("decimal", ".089")]),
        ("A factor of 2.5e-14 remains.", [("scientific", "2.5e-14")]),
        ("Below 1e-3 or 3E+5.", [("scientific", "1e-3"), ("scientific", "3E+5")]),
        ("About 10^-3 of it, or 10^{-8}.", [("power of ten", "10^-3"), ("power of ten", "10^{-8")]),
        ("It shrank to 10⁻⁸.", [("power of ten", "10⁻⁸")]),
        ("About 9 % still arrives, 12% here.", [("percentage", "9 %"), ("percentage", "12%")]),
        ("Some 40 per cent of it.", [("percentage", "40 per cent")]),
        ("Truncation cuts it 340×.", [("multiplier", "340×")]),
        ("It is 2x faster and ×3 larger.", [("multiplier", "2x"), ("multiplier", "×3")]),
        ("It grows 2,700-fold over 6,000 steps.", [("thousands", "2,700"), ("thousands", "6,000")]),
        ("A decimal multiplier: 2.84× as much.", [("multiplier", "2.84×")]),
    ],
)
def test_scanner_finds_numbers_that_look_like_results(text, expected):
    assert kinds(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "We use 32 units, 3 seeds and T = 50 steps (Bengio et al. 1994).",
        "The ratio is {glue:text}`intro_ratio:.2e` of the last step's.",
        "Glued: {glue}`key_0.5` and {glue:text}`t50_105:.1f`.",
        "Inline math $\\sigma(1) \\approx 0.731$ and $10^{-3}$ and $9\\,\\%$.",
        "Math across a line break, $\\sqrt{2}/2\n\\approx 0.71$, is still math.",
        "$$\nx = 0.5 \\times 10^{-3}\n$$ (eq-linear-law)",
        "\\begin{align}\na &= 0.25\n\\end{align}",
        "See {doc}`initialization_training` and {eq}`eq-1.5`, {numref}`fig-2.5`.",
        "Cite {cite}`pascanu2013difficulty,bengio1994learning` and {term}`gain <g 1.5>`.",
        "Install `jupyter-book 1.0.4` with `pip install tensorflow==2.21`.",
        "Keras `clipnorm=0.5` clips; ``x = 1.5`` too.",
        "A link [the paper](https://arxiv.org/abs/1211.5063) and <https://x.org/v1.2>.",
        "Goodfellow et al. 2016, §10.11.1, and Section 3.2 of the paper.",
        "Release v2.1 and version 2.21.0 of it.",
        "Digits are 8×8 images, 64 × 64 matrices.",
        "A list: 1,2,3 and a pair (2, 50).",
        "(fig-intro-1.5)=",
        "Units float32 and float64, an H100, a 2-core machine.",
    ],
)
def test_scanner_ignores_what_is_not_a_typed_result(text):
    assert kinds(text) == []


def test_scanner_skips_fenced_code_and_code_directives():
    text = "\n".join(
        [
            "```python",
            "x = 0.5 * 1e-3  # 9 %",
            "```",
            "",
            "```{code-cell} ipython3",
            "rate = 2.5e-14",
            "```",
            "",
            "```{math}",
            "0.731",
            "```",
            "",
            "~~~",
            "1,000",
            "~~~",
        ]
    )
    assert kinds(text) == []


def test_scanner_reads_captions_and_alt_text_but_not_labels_or_keys():
    text = "\n".join(
        [
            "```{glue:figure} fig-long-rates-0.5",
            ":name: fig-long-rates-0.5",
            ":width: 80%",
            ":alt: Lines that fall by 0.61 per step.",
            "",
            "The caption says 9 % reach.",
            "```",
        ]
    )
    assert kinds(text) == [("decimal", "0.61"), ("percentage", "9 %")]


def test_scanner_reads_exercise_titles_and_bodies_not_solution_labels():
    text = "\n".join(
        [
            ":::{exercise} Rates of 0.5",
            ":label: ex-0.5",
            "",
            "Predict 0.25.",
            ":::",
            "",
            ":::{solution} ex-0.5",
            ":class: dropdown",
            "",
            "It is 0.125.",
            ":::",
        ]
    )
    assert kinds(text) == [("decimal", "0.5"), ("decimal", "0.25"), ("decimal", "0.125")]


def test_inline_math_does_not_run_across_paragraphs():
    assert kinds("A price of $5 here.\n\nAnd 0.5 there, $x$.") == [("decimal", "0.5")]


@pytest.mark.parametrize("marker", ["% typed: parameter", "% typed: by hand", "%typed:  by hand"])
def test_a_marker_directly_above_exempts_that_paragraph_only(marker):
    text = "\n".join([marker, "Learning rate 0.1, momentum 0.9.", "", "But 0.73 was measured."])
    assert kinds(text) == [("decimal", "0.73")]


def test_a_marker_separated_by_a_blank_line_does_not_count():
    text = "\n".join(["% typed: parameter", "", "Learning rate 0.1."])
    assert kinds(text) == [("decimal", "0.1")]


def test_a_comment_ends_the_marked_paragraph():
    text = "\n".join(["% typed: by hand", "sigma(1) = 0.731", "% another comment", "got 0.73"])
    assert kinds(text) == [("decimal", "0.73")]


def test_an_unknown_marker_does_not_count():
    assert kinds("% typed: measured\nIt was 0.73.") == [("decimal", "0.73")]


def test_a_marker_above_a_figure_covers_its_alt_text():
    text = "\n".join(
        ["% typed: parameter", "```{figure} a.png", ":alt: rate 0.5", "", "Caption 0.5.", "```"]
    )
    assert kinds(text) == [("decimal", "0.5")]  # the caption paragraph is not marked


def test_findings_report_the_line_and_the_paragraph():
    (finding,) = typed_numbers("Intro.\n\nFirst line,\nthen 0.61 here.")
    assert finding.line == 4
    assert "then 0.61 here" in finding.paragraph
    assert "line 4: decimal '0.61'" in str(finding)


def test_chapter_markdown_reads_notebook_markdown_cells_only(tmp_path):
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": ["# Title\n", "0.5"], "metadata": {}},
            {"cell_type": "code", "source": ["x = 0.25"], "metadata": {}, "outputs": []},
        ]
    }
    path = tmp_path / "chapter.ipynb"
    path.write_text(json.dumps(notebook))
    assert chapter_markdown(path) == ["# Title\n0.5"]
