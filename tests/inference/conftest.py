"""Fixtures for the handler tests: the handler loaded by path, and models loaded once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.inference.handler_loader import load_handler_module

LOCALMAKER_ENV = (
    "LOCALMAKER_DEVICE",
    "LOCALMAKER_DTYPE",
    "LOCALMAKER_POOLING",
    "LOCALMAKER_TRUST_REMOTE_CODE",
    "LOCALMAKER_ALLOW_PICKLE",
    "LOCALMAKER_CACHE_DIR",
    "LOCALMAKER_BATCH_SIZE",
    "LOCALMAKER_EMBEDDING_BACKEND",
    "LOCALMAKER_PACKED_BATCHES",
    "LOCALMAKER_EMBEDDING_LANES",
    "LOCALMAKER_SAFETY_CHECKER",
    "LOCALMAKER_TORCH_COMPILE",
    "LOCALMAKER_MAX_PIXELS",
)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op parallelism, and on a shared 2-core machine two spinning
    OpenMP threads competing with other processes made one 64x64 generation take seconds, not 0.1 s."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _clean_handler_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the defaults; a test sets only the variables it is about."""
    for name in LOCALMAKER_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def handler() -> ModuleType:
    return load_handler_module()


def _model_fn_with_clean_env(handler: ModuleType, model_dir: Path, **env: str) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        for name in LOCALMAKER_ENV:
            mp.delenv(name, raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        return handler.model_fn(str(model_dir))


@pytest.fixture(scope="session")
def minilm_service(handler: ModuleType, minilm_dir: Path) -> Any:
    return _model_fn_with_clean_env(handler, minilm_dir)


@pytest.fixture(scope="session")
def qwen_service(handler: ModuleType, tiny_qwen3_dir: Path) -> Any:
    return _model_fn_with_clean_env(handler, tiny_qwen3_dir)


@pytest.fixture(scope="session")
def sd_service(handler: ModuleType, tiny_sd_dir: Path) -> Any:
    """The tiny SD pipeline behind the handler, loaded once; tests must leave it as they found it."""
    return _model_fn_with_clean_env(handler, tiny_sd_dir)


@pytest.fixture(scope="session")
def st_minilm(minilm_dir: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


@pytest.fixture(scope="session")
def st_qwen(tiny_qwen3_dir: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_qwen3_dir), device="cpu")


def linked_model_dir(source: Path, dest: Path) -> Path:
    """A writable copy of a model directory whose entries are symlinks (weights are not copied)."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if not entry.name.startswith("."):
            os.symlink(entry, dest / entry.name)
    return dest


@pytest.fixture
def qwen_copy(tiny_qwen3_dir: Path, tmp_path: Path) -> Iterator[Path]:
    yield linked_model_dir(tiny_qwen3_dir, tmp_path / "model")
