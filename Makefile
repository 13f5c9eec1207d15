# `make demo` and `make test` both work on a fresh machine: they create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of this version is on the developer and CI machines; any other spec downloads a
# multi-GB CUDA build. GPU users: see README, "Running on a GPU".
TORCH_SPEC ?= torch==2.13.0
# SageMaker SDK v3 cannot share the project's environment (its mlflow pins gunicorn below 27, and it is the
# same distribution as SDK v2), so the tests run v3 scripts from an environment of their own.
SDK3_VENV := .venv-sdk3
SDK3_SPEC ?= sagemaker==3.27.0

.PHONY: demo test lint setup sdk3 clean

$(BIN)/localmaker: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/localmaker

$(SDK3_VENV)/.installed: Makefile
	test -x $(SDK3_VENV)/bin/python || $(PYTHON) -m venv $(SDK3_VENV)
	$(SDK3_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SDK3_VENV)/bin/python -m pip install --quiet "$(SDK3_SPEC)"
	touch $@

sdk3: $(SDK3_VENV)/.installed

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/localmaker demo

test: setup sdk3
	HF_HUB_OFFLINE=1 LOCALMAKER_SDK3_PYTHON=$(CURDIR)/$(SDK3_VENV)/bin/python $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check localmaker tests benchmarks
	$(BIN)/mypy localmaker

clean:
	rm -rf $(VENV) $(SDK3_VENV) build *.egg-info .pytest_cache
