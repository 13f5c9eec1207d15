"""LOCALMAKER_EMBEDDING_BACKEND=onnxruntime: the same vectors as sentence-transformers, an export made once
and reused, and a start that fails, saying why, when the runtime would serve something else."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.inference.conftest import _model_fn_with_clean_env, linked_model_dir
from tests.inference.handler_loader import invoke, sibling

pytest.importorskip("onnxruntime")

# Lengths from 1 to about 200 tokens, so the batches hold padding, and one past MiniLM's 256-token limit.
TEXTS = ["ok", "A man is eating food.", "The new movie is awesome " * 8, "semantic search over long documents " * 40,
         "Berlin is the capital of Germany", "Ein Mann isst Essen."]
BACKEND = {"LOCALMAKER_EMBEDDING_BACKEND": "onnxruntime"}


def _vectors(handler: ModuleType, service: Any, texts: list[str]) -> np.ndarray:
    raw, _ = invoke(handler, service, {"inputs": texts})
    return np.array(json.loads(raw)["embeddings"])


@pytest.fixture(scope="module")
def onnx_minilm(handler: ModuleType, minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    cache = tmp_path_factory.mktemp("onnx-cache")
    return _model_fn_with_clean_env(handler, minilm_dir, LOCALMAKER_CACHE_DIR=str(cache), **BACKEND), cache


def test_onnxruntime_vectors_equal_sentence_transformers(handler, onnx_minilm, st_minilm) -> None:
    service, _cache = onnx_minilm
    expected = st_minilm.encode(TEXTS, normalize_embeddings=True)
    served = _vectors(handler, service, TEXTS)
    assert served.shape == expected.shape == (len(TEXTS), 384)
    assert np.sum(served * expected, axis=1).min() >= 0.9999
    np.testing.assert_allclose(served, expected, atol=1e-4)


def test_the_export_is_made_once_and_reused_by_the_next_start(handler, onnx_minilm, minilm_dir, caplog) -> None:
    _service, cache = onnx_minilm
    exports = list(cache.glob("encoder-*.onnx"))
    assert len(exports) == 1 and exports[0].stat().st_size > 1_000_000  # MiniLM's 22 M parameters
    before = exports[0].stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        again = _model_fn_with_clean_env(handler, minilm_dir, LOCALMAKER_CACHE_DIR=str(cache), **BACKEND)
    assert "exporting the embedding model to ONNX" not in caplog.text
    assert "checked against PyTorch" in caplog.text
    assert exports[0].stat().st_mtime_ns == before
    assert not list(cache.glob("*.tmp"))
    np.testing.assert_allclose(_vectors(handler, again, TEXTS[:2]), _vectors(handler, onnx_minilm[0], TEXTS[:2]))


def test_an_export_that_computes_something_else_fails_the_start(handler, onnx_minilm, minilm_dir, tmp_path) -> None:
    """A cached graph from other weights (here: MiniLM with one layer's weights scaled) is refused."""
    import torch

    onnx_encoder = sibling("onnx_encoder")
    serving_errors = sibling("serving_errors")
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    served = AutoModel.from_pretrained(str(minilm_dir)).eval()

    def altered() -> Any:
        model = AutoModel.from_pretrained(str(minilm_dir), attn_implementation="eager").eval()
        with torch.no_grad():
            model.encoder.layer[3].output.dense.weight.mul_(3.0)
        return model

    with pytest.raises(serving_errors.ModelLoadError) as info:
        onnx_encoder.load_onnx_encoder(minilm_dir, tokenizer, lambda inputs: served(**inputs).last_hidden_state,
                                       altered, "f" * 64, [tmp_path])
    message = str(info.value)
    assert "computes different vectors from PyTorch" in message and "unset LOCALMAKER_EMBEDDING_BACKEND" in message
    assert str(tmp_path) in message


@pytest.mark.parametrize(("env", "needle"), [
    ({"LOCALMAKER_EMBEDDING_BACKEND": "onnx"}, "one of torch, onnxruntime"),
    ({**BACKEND, "LOCALMAKER_DTYPE": "bfloat16"}, "runs float32 on the CPU"),
])
def test_settings_it_cannot_serve_are_refused_at_start(handler, minilm_dir, env, needle) -> None:
    serving_errors = sibling("serving_errors")
    with pytest.raises(serving_errors.ModelLoadError, match=needle):
        _model_fn_with_clean_env(handler, minilm_dir, **env)


def test_a_missing_onnxruntime_says_what_to_install(handler, minilm_dir, tmp_path, monkeypatch) -> None:
    serving_errors = sibling("serving_errors")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an environment without the package gives
    model = linked_model_dir(minilm_dir, tmp_path / "model")
    with pytest.raises(serving_errors.ModelLoadError, match=r"pip install 'localmaker\[onnx\]'"):
        _model_fn_with_clean_env(handler, model, **BACKEND)
    assert not (model / ".localmaker-cache").exists()  # refused before anything was written
