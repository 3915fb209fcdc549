"""A link that says "Chapter N" points at chapter N of the table of contents.

The chapters link each other as {doc}`Chapter 2 <long_sequences>`: short link text reads
in a sentence where a full title would not. The numbers are typed, so this test checks
each one against the numbering Jupyter Book gives the table of contents (chapters
numbered across the numbered parts, in order).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\{doc\}`Chapter (\d+) <([a-z_]+)>`")


def chapter_numbers() -> dict[str, int]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    numbers, count = {}, 0
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            if part.get("numbered"):
                count += 1
                numbers[Path(chapter["file"]).name] = count
    return numbers


def book_markdown() -> dict[str, str]:
    texts = {}
    for path in sorted((ROOT / "book").glob("*.md")):
        texts[path.name] = path.read_text()
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        texts[path.name] = "\n".join(
            "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"
        )
    return texts


def test_every_chapter_link_names_the_chapters_number():
    numbers = chapter_numbers()
    assert numbers["bptt"] == 1 and "intro" not in numbers, numbers
    wrong, links = [], 0
    for page, text in book_markdown().items():
        for number, name in LINK.findall(text):
            links += 1
            if numbers.get(name) != int(number):
                wrong.append(f"{page}: Chapter {number} <{name}> (is {numbers.get(name)})")
    assert links > 100, links  # the chapters do link each other this way
    assert not wrong, wrong


def test_the_check_catches_a_wrong_number():
    numbers = chapter_numbers()
    found = LINK.findall("see {doc}`Chapter 3 <long_sequences>`")
    assert [(n, name) for n, name in found if numbers[name] != int(n)]
