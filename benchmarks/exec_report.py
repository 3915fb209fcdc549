"""Time per notebook from the last book build, as a Markdown table (for the README).

Reads the execution cache that ``make book`` fills (``_build/.jupyter_cache``) and
prints one row per chapter. ``--update-readme`` writes the table into README.md between
the ``exec-report`` markers.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from jupyter_cache import get_cache

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"


def rows() -> list[tuple[str, float, str]]:
    if not CACHE.exists():
        raise SystemExit(f"no execution cache at {CACHE}: run `make book` first")
    cache = get_cache(CACHE)
    found = []
    for record in cache.list_project_records():
        path = Path(record.uri)
        cached = cache.get_cached_project_nb(record.uri)
        if cached is None:
            continue
        seconds = float(cached.data.get("execution_seconds", float("nan")))
        found.append((str(path.relative_to(ROOT)), seconds, str(cached.created)[:16]))
    return sorted(found)


def table() -> str:
    lines = ["| notebook | execution time | executed |", "|---|---:|---|"]
    total = 0.0
    for name, seconds, when in rows():
        lines.append(f"| `{name}` | {seconds:.1f} s | {when} |")
        total += seconds
    lines.append(f"| **all** | **{total:.0f} s** | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()
    text = table()
    print(text)
    if args.update_readme:
        readme = ROOT / "README.md"
        block = f"<!-- exec-report:start -->\n{text}\n<!-- exec-report:end -->"
        readme.write_text(
            re.sub(
                r"<!-- exec-report:start -->.*<!-- exec-report:end -->",
                lambda _: block,
                readme.read_text(),
                flags=re.S,
            )
        )


if __name__ == "__main__":
    main()
