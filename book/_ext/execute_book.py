"""Execute the book's notebooks into Jupyter Book's execution cache, several at a time.

``make book`` runs this before ``jupyter-book build``: the build then finds every
notebook already executed in ``_build/.jupyter_cache`` and only renders it. Jupyter Book
1.x executes notebooks one after the other, and one chapter's small models keep about
one core busy, so on a machine with two cores two chapters at a time take about half the
time.

Each notebook runs in a fresh kernel in a temporary folder (the book's
``run_in_temp: true``), exactly as the build would run it; the cache stores it under the
same hash of its code cells that the build looks up. Notebooks whose code is already
cached are not run again. The longest chapters start first (their times from the last
run are kept in ``_build/.execution-times.json``), so that no long chapter is left to
run alone at the end.

A notebook that fails is not cached: its error is printed and the script exits with
status 1 (the build, run on its own, would stop on the same cell).

Usage: ``python book/_ext/execute_book.py [--jobs N] [NOTEBOOK ...]`` (default: one job
per core, every notebook in ``_toc.yml``).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path

import yaml
from jupyter_cache import get_cache
from jupyter_cache.executors.basic import ExecutionWorkerTempMProc, ProcessData

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "_build" / ".jupyter_cache"
TIMES = ROOT / "_build" / ".execution-times.json"
TIMEOUT = 600  # seconds per cell, as in _config.yml


def book_notebooks() -> list[Path]:
    """The notebooks the table of contents lists, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    paths = [ROOT / f"{name}.ipynb" for name in files]
    return [path for path in paths if path.exists()]


def _run(data: ProcessData) -> tuple[int, str, float]:
    start = time.perf_counter()
    status, uri = ExecutionWorkerTempMProc()(data)
    return status, uri, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("only", nargs="*", help="run only these notebooks (paths)")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    cache = get_cache(str(CACHE))
    paths = book_notebooks()
    if args.only:
        wanted = {Path(name).resolve() for name in args.only}
        paths = [path for path in paths if path.resolve() in wanted]
    records = [cache.add_nb_to_project(str(path)) for path in paths]
    todo = cache.list_unexecuted(filter_pks=[record.pk for record in records])
    if not todo:
        print(f"execute_book: all {len(records)} notebooks are cached")
        return 0
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    todo.sort(key=lambda record: -times.get(_name(record.uri), 0.0))
    print(f"execute_book: running {len(todo)} notebooks, {args.jobs} at a time", flush=True)
    work = [ProcessData(r.pk, r.uri, cache, TIMEOUT, False) for r in todo]
    start = time.perf_counter()
    failed = []
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for status, uri, seconds in pool.imap_unordered(_run, work, chunksize=1):
            name = _name(uri)
            times[name] = round(seconds, 1)
            state = "ok" if status == 0 else "FAILED"
            print(f"  {name}: {seconds:.1f} s {state}", flush=True)
            if status != 0:
                failed.append(uri)
    TIMES.write_text(json.dumps(times, indent=1, sort_keys=True))
    print(f"execute_book: {time.perf_counter() - start:.0f} s in all", flush=True)
    for uri in failed:
        record = cache.get_project_record(uri)
        print(f"\n{_name(uri)} failed:\n{record.traceback or '(no traceback)'}", file=sys.stderr)
    return 1 if failed else 0


def _name(uri: str) -> str:
    return str(Path(uri).relative_to(ROOT))


if __name__ == "__main__":
    sys.exit(main())
