# `make demo` and `make test` both work on a fresh machine: they create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of this version is on the developer and CI machines; any other spec downloads a
# multi-GB CUDA build. GPU users: see README, "Running on a GPU".
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint setup clean

$(BIN)/localmaker: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/localmaker

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/localmaker demo

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check localmaker tests benchmarks
	$(BIN)/mypy localmaker

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
