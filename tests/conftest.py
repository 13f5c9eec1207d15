"""Shared fixtures: tiny real models are built once per test session, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Marks this run in the environment of every process it starts, and fails the run if one outlives it.
from tests.leftover_check import pytest_sessionfinish  # noqa: F401 - a hook, registered by being here

# Tests must never reach a model hub; set before transformers is imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def localmaker_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private LOCALMAKER_HOME so tests never touch (or depend on) the user's cache."""
    home = tmp_path_factory.mktemp("localmaker-home")
    os.environ["LOCALMAKER_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from localmaker.model.sources import resolve_source

    return resolve_source("minilm")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(localmaker_home: Path) -> Path:
    from localmaker.model.sources import resolve_source

    return resolve_source("tiny-qwen3")


@pytest.fixture(scope="session")
def tiny_sd_dir(localmaker_home: Path) -> Path:
    from localmaker.model.sources import resolve_source

    return resolve_source("tiny-sd")
