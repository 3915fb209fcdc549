# rnngrad: `make book` builds the book, `make test` runs every check. Both create .venv first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Quiet TensorFlow's C++ start-up logs in every process we start.
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: book book-strict pdf test lint unit integration notebooks numerics site-test repro benchmark report \
        lock \
        clean cache-check test-latest

$(STAMP): requirements-lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## book: build the HTML book into _build/html, executing every notebook (JOBS at a time,
## default one per core: book/_ext/execute_book.py fills the build's execution cache first)
book: $(STAMP) cache-check
	$(BIN)/python book/_ext/execute_book.py $(if $(JOBS),--jobs $(JOBS))
	$(BIN)/jupyter-book build .

## book-strict: the build CI runs: any warning, broken reference or failing cell fails it
book-strict: $(STAMP) cache-check
	$(BIN)/python book/_ext/execute_book.py $(if $(JOBS),--jobs $(JOBS))
	$(BIN)/jupyter-book build . -W -n --keep-going

## pdf: the book as one PDF, _build/pdf/book.pdf (after `make book`; needs the chromium and
## poppler-utils OS packages), then the site again: its pages link the PDF only when it
## exists at build time (book/_ext/rnngrad_site.py), so this build adds the link to every
## page (from the execution cache: nothing is executed) and copies the PDF into the site.
pdf: $(STAMP)
	$(BIN)/python book/_ext/make_pdf.py
	$(BIN)/jupyter-book build .

# The execution cache hashes cell sources only: a change to any file of the package (or to the
# locked versions) must re-execute every chapter, so clear the cache when they change.
cache-check:
	@mkdir -p _build
	@hash=$$(find rnngrad -type f ! -path '*/__pycache__/*' | LC_ALL=C sort | xargs cat requirements-lock.txt | sha256sum | cut -d' ' -f1); \
	if [ "$$(cat _build/.package-hash 2>/dev/null)" != "$$hash" ]; then \
		echo "rnngrad/ or the lock file changed: clearing the notebook execution cache"; \
		rm -rf _build/.jupyter_cache; echo "$$hash" > _build/.package-hash; \
	fi

## test: lint, unit tests (with the docstring examples), the integration tests, then every
## notebook under nbmake
test: lint unit integration notebooks

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## unit: the fast tests (budget 3 minutes on 2 cores); integration: those that train
## models or run the command line end to end
unit: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile tests --ignore=tests/site -m "not slow and not integration" --doctest-modules rnngrad

integration: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile tests --ignore=tests/site -m "integration"

notebooks: $(STAMP)
	$(BIN)/pytest -q -n auto --nbmake --nbmake-timeout=300 book

## numerics: every notebook under nbmake once per floating-point kernel TensorFlow may pick
## on another processor (oneDNN capped at AVX2, at AVX-512, uncapped; Eigen without oneDNN):
## the checks must hold under each (about 4 x `make notebooks`; not part of `make test`)
numerics: $(STAMP)
	ONEDNN_MAX_CPU_ISA=AVX2 $(BIN)/pytest -q -n auto --nbmake --nbmake-timeout=300 book
	ONEDNN_MAX_CPU_ISA=AVX512_CORE $(BIN)/pytest -q -n auto --nbmake --nbmake-timeout=300 book
	$(BIN)/pytest -q -n auto --nbmake --nbmake-timeout=300 book
	TF_ENABLE_ONEDNN_OPTS=0 $(BIN)/pytest -q -n auto --nbmake --nbmake-timeout=300 book

## site-test: the built site and the PDF in headless Chromium (needs `make book`, `make pdf`,
## and the chromium and poppler-utils packages)
site-test: $(STAMP)
	$(BIN)/pytest -q tests/site

## repro: a chapter that trains models, run twice, prints the same numbers
repro: $(STAMP)
	$(BIN)/pytest -q -m slow tests

## benchmark: the probe's and the command's costs (README tables)
benchmark: $(STAMP)
	$(BIN)/python -m benchmarks.probe --update-readme
	$(BIN)/python -m benchmarks.cli

## report: the time each notebook took in the last book build, into the README
report: $(STAMP)
	$(BIN)/python benchmarks/exec_report.py --update-readme

## test-latest: the unit tests against the newest versions pyproject.toml allows (downloads)
test-latest: $(STAMP)
	$(BIN)/python -m benchmarks.latest

## lock: re-resolve requirements-lock.txt from pyproject.toml's ranges
lock:
	rm -rf /tmp/rnngrad-lock && $(PYTHON) -m venv /tmp/rnngrad-lock
	/tmp/rnngrad-lock/bin/python -m pip install --quiet --upgrade pip
	/tmp/rnngrad-lock/bin/python -m pip install --quiet ".[book,test,dev]"
	/tmp/rnngrad-lock/bin/python -m pip freeze --exclude rnngrad > requirements-lock.txt

clean:
	rm -rf _build $(VENV)
