# rnngrad: `make book` builds the book, `make test` runs every check. Both create .venv first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Quiet TensorFlow's C++ start-up logs in every process we start.
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: book book-strict test lint unit notebooks benchmark lock clean

$(STAMP): requirements-lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## book: build the HTML book into _build/html, executing every notebook
book: $(STAMP)
	$(BIN)/jupyter-book build .

## book-strict: the build CI runs: any warning, broken reference or failing cell fails it
book-strict: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

## test: lint, unit tests, then every notebook executed by nbmake
test: lint unit notebooks

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: $(STAMP)
	$(BIN)/pytest -q tests

notebooks: $(STAMP)
	$(BIN)/pytest -q --nbmake --nbmake-timeout=300 book

## benchmark: the probe's cost against a training step and the eager unroll (README table)
benchmark: $(STAMP)
	$(BIN)/python benchmarks/probe.py

## lock: re-resolve requirements-lock.txt from pyproject.toml's ranges
lock:
	rm -rf /tmp/rnngrad-lock && $(PYTHON) -m venv /tmp/rnngrad-lock
	/tmp/rnngrad-lock/bin/python -m pip install --quiet --upgrade pip
	/tmp/rnngrad-lock/bin/python -m pip install --quiet ".[book,test,dev]"
	/tmp/rnngrad-lock/bin/python -m pip freeze --exclude rnngrad > requirements-lock.txt

clean:
	rm -rf _build $(VENV)
