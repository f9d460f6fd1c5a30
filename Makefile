# One entry point for a fresh machine. Targets create .venv and install what they need on first use.
#   make test          README's test command: unit tests, then every chapter executed once as Colab runs it
#   make book          build the book from the .md chapters, executing them (jupyter-cache; local use)
#   make book-full     the same in full mode (publishing; about an hour on 2 cores), own cache
#   make ci            what CI runs (.ci/run): install, lint, unit tests, rehearsal, book, static check
# Data: the manifest's upstream URLs, or a local mirror: ../shared/data beside the checkout is used when it
# exists and TUTORIALREG_MIRROR is unset (and then, as its lung CT images are upstream only, stand-ins).
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
PYTHON ?= python3
SHARED_DATA := $(wildcard $(abspath ../shared/data))
export TUTORIALREG_MIRROR ?= $(SHARED_DATA)
export TUTORIALREG_ALLOW_STANDIN ?= $(if $(SHARED_DATA),1,)
export TUTORIALREG_WIDGETS ?= static
export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 2
JB_FLAGS := -W --keep-going
# `make test-oldest`: the lowest versions pyproject.toml allows, on the lowest Python it allows
OLDEST_PYTHON ?= python3.10
OLDEST_CHAPTER ?= book/05_nonrigid_mr

.PHONY: install test test-unit rehearse book book-staged book-full check-static lint lint-workflows nbval \
        test-oldest bench ci clean

install: $(VENV)/.installed

# uv installs from its cache in seconds (pip is the fallback); the package itself is an editable install here
$(VENV)/.installed: requirements.txt requirements-book.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv || true
	if [ -x $(UV) ]; then \
	  $(UV) pip install -q --python $(PY) -r requirements-book.txt && \
	  $(UV) pip install -q --python $(PY) --no-deps -e . ; \
	else \
	  $(PY) -m pip install -q -r requirements-book.txt && $(PY) -m pip install -q --no-deps -e . ; \
	fi
	touch $@

# README's test command: the unit tests, then every chapter executed once, alone, from the built wheel
test: test-unit rehearse

test-unit: install
	$(PY) -m pytest tests

# Every chapter as a Colab reader gets it (tools/rehearse.py): executed notebooks in _build/executed
rehearse: install
	$(PY) tools/rehearse.py $(if $(CHAPTERS),--chapters $(CHAPTERS),) $(REHEARSE_FLAGS)

# The book from the rehearsal's executed notebooks (nothing executed again): _build/html
book-staged: install
	$(PY) tools/stage_book.py $(STAGE_FLAGS)
	$(VENV)/bin/jupyter-book build $(JB_FLAGS) _build/staging --path-output .

# The book from the .md sources, executing them (cached in _build/.jupyter_cache): _build/html
book: install
	TUTORIALREG_FAST=1 $(VENV)/bin/jupyter-book build $(JB_FLAGS) .

# Full settings for publishing; its own execution cache (jupyter-cache keys on code, not on the mode), then
# copied to _build/html, the folder the workflow publishes
book-full: install
	TUTORIALREG_FAST=0 $(VENV)/bin/jupyter-book build $(JB_FLAGS) . --path-output _build/full
	rm -rf _build/html && mkdir -p _build && cp -a _build/full/_build/html _build/html

# Offline reading of _build/html (build it first: make book, book-staged or book-full)
check-static: install
	$(PY) tools/check_static_book.py _build/html

lint: install
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(PY) tools/lint_workflows.py

lint-workflows: install
	$(PY) tools/lint_workflows.py

# Executes every chapter's .ipynb in book/ with nbval (alternative to the rehearsal; uses .venv)
nbval: install
	$(PY) -m pytest --nbval book/

# The lowest versions the ranges allow: unit tests + one chapter, in _build/oldest
test-oldest: install
	$(PY) tools/test_oldest.py --python $(OLDEST_PYTHON) --chapter $(OLDEST_CHAPTER)

bench: install
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_classical.py
	$(PY) benchmarks/bench_train.py

ci:
	bash .ci/run

clean:
	rm -rf _build .jupyter_cache
