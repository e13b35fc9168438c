# Two commands do all the set-up on a fresh machine:
#   make demo   train the built-in default (mlp preset, Fashion-MNIST, 10 epochs, ~20 s on 2 CPU cores)
#   make test   lint, type-check, build the docs and run the test suite
#   make test-fast  the same without the end-to-end tests marked slow (a quick check while working)
#   make bench  the benchmark suite (not part of the tests)
#   make docs   the documentation site in site/ (--strict: a broken link or API name fails); make docs-serve serves it
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch. Installed first and pinned so that no later step pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test test-fast lint docs docs-serve data bench clean

$(BIN)/vaekit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,docs,hyperspherical,tune]"
	touch $@

setup: $(BIN)/vaekit

# Fashion-MNIST from Debian's package when we may install it; otherwise vaekit downloads it.
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ "$$(id -u)" = 0 ] \
	    && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; fi

demo: setup data
	$(BIN)/vaekit train --dataset fashion-mnist --preset mlp --out runs/demo-mlp --force

lint: setup
	$(BIN)/ruff check src tests benchmarks examples docs/*.py
	$(BIN)/ruff format --check src tests benchmarks examples docs/*.py
	$(BIN)/mypy src

# NO_MKDOCS_2_WARNING: mkdocs-material prints a banner about its successor on every build.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict

test: setup data lint docs
	$(BIN)/python -m pytest

test-fast: setup lint
	$(BIN)/python -m pytest -m "not slow"

# The benchmark suite (about 20 minutes on 2 cores); writes benchmarks/results.json.
bench: setup data
	$(BIN)/python benchmarks/suite.py
	$(BIN)/python benchmarks/table.py

clean:
	rm -rf $(VENV) runs site .pytest_cache .mypy_cache .ruff_cache
