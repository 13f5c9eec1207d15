"""The whole pipeline on the real MiniLM, checked against sentence-transformers itself."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.inference.conftest import _model_fn_with_clean_env, linked_model_dir
from tests.inference.handler_loader import invoke

TEXTS = [
    "Ronaldo scores goals grater than messi",
    "Ronaldo Plays for portugal",
    "Leonardo messi plays soccer",
    "Aegentina won FIFA worldcup",
]


def _embed(handler: ModuleType, service: Any, body: dict[str, Any]) -> dict[str, Any]:
    raw, content_type = invoke(handler, service, body)
    assert content_type == "application/json"
    result: dict[str, Any] = json.loads(raw)
    return result


def test_embeddings_equal_sentence_transformers(handler: ModuleType, minilm_service: Any, st_minilm: Any) -> None:
    result = _embed(handler, minilm_service, {"inputs": TEXTS})
    expected = st_minilm.encode(TEXTS, normalize_embeddings=True)
    assert result["dimensions"] == 384
    np.testing.assert_allclose(np.array(result["embeddings"]), expected, atol=1e-5)


def test_usage_counts_real_tokens(handler: ModuleType, minilm_service: Any) -> None:
    result = _embed(handler, minilm_service, {"inputs": TEXTS})
    tokenizer = minilm_service.model.tokenizer
    assert result["usage"]["tokens"] == sum(len(tokenizer(text)["input_ids"]) for text in TEXTS)


def test_a_single_string_gives_one_row(handler: ModuleType, minilm_service: Any, st_minilm: Any) -> None:
    result = _embed(handler, minilm_service, {"inputs": TEXTS[0]})
    assert len(result["embeddings"]) == 1
    np.testing.assert_allclose(
        result["embeddings"][0], st_minilm.encode(TEXTS[0], normalize_embeddings=True), atol=1e-5
    )


def test_matryoshka_dimensions_truncate_then_renormalise(handler: ModuleType, minilm_service: Any) -> None:
    full = np.array(_embed(handler, minilm_service, {"inputs": TEXTS})["embeddings"])
    result = _embed(handler, minilm_service, {"inputs": TEXTS, "parameters": {"dimensions": 64}})
    got = np.array(result["embeddings"])
    assert result["dimensions"] == 64 and got.shape == (4, 64)
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_normalize_false_returns_raw_pooled_vectors(handler: ModuleType, minilm_service: Any, st_minilm: Any) -> None:
    from sentence_transformers import SentenceTransformer

    # The checkpoint's own pipeline ends in a Normalize module; drop it to get the raw pooled vectors.
    without_normalize = SentenceTransformer(modules=[st_minilm[0], st_minilm[1]], device="cpu")
    result = _embed(handler, minilm_service, {"inputs": TEXTS, "parameters": {"normalize": False}})
    got = np.array(result["embeddings"])
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0)
    np.testing.assert_allclose(got, without_normalize.encode(TEXTS), atol=1e-5)


def test_npy_round_trip(handler: ModuleType, minilm_service: Any) -> None:
    raw, content_type = invoke(handler, minilm_service, {"inputs": TEXTS}, accept="application/x-npy")
    assert content_type == "application/x-npy"
    array = np.load(io.BytesIO(raw), allow_pickle=False)
    assert array.dtype == np.float32 and array.shape == (4, 384)
    json_rows = np.array(_embed(handler, minilm_service, {"inputs": TEXTS})["embeddings"])
    np.testing.assert_allclose(array, json_rows, atol=1e-7)


@pytest.mark.parametrize("accept", ["", "*/*", "application/json", "application/json; charset=utf-8", "text/html, */*"])
def test_accept_defaults_to_json(handler: ModuleType, minilm_service: Any, accept: str) -> None:
    raw, content_type = invoke(handler, minilm_service, {"inputs": "hi"}, accept=accept)
    assert content_type == "application/json"
    assert "embeddings" in json.loads(raw)


def test_content_type_with_charset_is_json(handler: ModuleType, minilm_service: Any) -> None:
    raw, _ = invoke(handler, minilm_service, {"inputs": "hi"}, content_type="application/json; charset=utf-8")
    assert len(json.loads(raw)["embeddings"]) == 1


def test_batching_does_not_change_results(
    handler: ModuleType, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch, minilm_service: Any
) -> None:
    monkeypatch.setenv("LOCALMAKER_BATCH_SIZE", "3")
    small_batches = handler.model_fn(str(minilm_dir))
    assert small_batches.model.batch_size == 3
    texts = [f"sentence number {i} about football" for i in range(7)]
    got = _embed(handler, small_batches, {"inputs": texts})
    expected = _embed(handler, minilm_service, {"inputs": texts})
    np.testing.assert_allclose(got["embeddings"], expected["embeddings"], atol=1e-5)
    assert got["usage"] == expected["usage"]


def _minilm_variant(minilm_dir: Path, dest: Path, pooling: dict[str, Any], prompts: dict[str, Any]) -> Path:
    """MiniLM's weights with other sentence-transformers settings: its pooling config and its prompts."""
    variant = linked_model_dir(minilm_dir, dest)
    (variant / "1_Pooling").unlink()
    (variant / "1_Pooling").mkdir()
    (variant / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 384, **pooling}))
    (variant / "config_sentence_transformers.json").unlink()
    (variant / "config_sentence_transformers.json").write_text(json.dumps(prompts))
    return variant


@pytest.mark.parametrize(
    "pooling",
    [{"pooling_mode_mean_tokens": True}, {"pooling_mode_cls_token": True, "include_prompt": False},
     {"pooling_mode_mean_tokens": True, "include_prompt": False}],
    ids=["mean", "cls-without-prompt", "mean-without-prompt"],
)
def test_a_default_prompt_and_prompt_exclusion_match_sentence_transformers(
    handler: ModuleType, minilm_dir: Path, tmp_path: Path, pooling: dict[str, Any]
) -> None:
    from sentence_transformers import SentenceTransformer

    prompts = {"prompts": {"passage": "passage: ", "query": "query: "}, "default_prompt_name": "passage"}
    variant = _minilm_variant(minilm_dir, tmp_path / "variant", pooling, prompts)
    service = _model_fn_with_clean_env(handler, variant)
    reference = SentenceTransformer(str(variant), device="cpu")

    default = np.array(_embed(handler, service, {"inputs": TEXTS})["embeddings"])
    np.testing.assert_allclose(default, reference.encode(TEXTS, normalize_embeddings=True), atol=1e-5)
    named = np.array(_embed(handler, service, {"inputs": TEXTS, "parameters": {"prompt_name": "query"}})["embeddings"])
    expected = reference.encode(TEXTS, prompt_name="query", normalize_embeddings=True)
    np.testing.assert_allclose(named, expected, atol=1e-5)
