"""Fixtures for the training script's tests: the synthetic neon-city training set, made once."""

from __future__ import annotations

from pathlib import Path

import pytest

from localmaker.model.builders.style_dataset import make_style_dataset


@pytest.fixture(scope="session")
def style_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_style_dataset(tmp_path_factory.mktemp("neon") / "training", count=12, size=64)
