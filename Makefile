# One entry point for a fresh machine: `make test` (all tests, chapters included) and `make book`.
# Both create .venv and install everything on first use. Data: the manifest's upstream URLs, or a mirror.
VENV ?= .venv
PY := $(VENV)/bin/python
export TUTORIALREG_MIRROR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install test test-unit test-book book check-static bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-book.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-book.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Every test: the package's unit tests, then every chapter executed by nbval.
test: install
	$(PY) -m pytest tests book --nbval

test-unit: install
	$(PY) -m pytest tests

lint: install
	$(VENV)/bin/ruff check src tests benchmarks tools

# Build the whole book (executes every chapter; a failing cell fails the build).
book: install
	$(VENV)/bin/jupyter-book build -W --keep-going .

check-static: book
	$(PY) tools/check_static_book.py _build/html

bench: install
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_classical.py
	$(PY) benchmarks/bench_train.py

clean:
	rm -rf _build .jupyter_cache
