"""Last-token pooling, left padding and prompts on a tiny real Qwen3, against sentence-transformers."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np

from tests.inference.handler_loader import invoke, sibling

TEXTS = [
    "Ronaldo plays for Portugal.",
    "Argentina won the FIFA World Cup in Qatar in 2022.",
    "A cat sat on the mat.",
    "The central bank raised interest rates again, and stock markets fell sharply on Monday.",
]


def _embeddings(handler: ModuleType, service: Any, body: dict[str, Any]) -> np.ndarray:
    raw, _ = invoke(handler, service, body)
    return np.array(json.loads(raw)["embeddings"])


def test_the_tokenizer_pads_on_the_left(qwen_service: Any) -> None:
    assert qwen_service.model.tokenizer.padding_side == "left"
    assert qwen_service.model.layout.pooling == "last_token"


def test_embeddings_equal_sentence_transformers(handler: ModuleType, qwen_service: Any, st_qwen: Any) -> None:
    got = _embeddings(handler, qwen_service, {"inputs": TEXTS})
    np.testing.assert_allclose(got, st_qwen.encode(TEXTS, normalize_embeddings=True), atol=1e-5)


def test_query_prompt_equals_sentence_transformers(handler: ModuleType, qwen_service: Any, st_qwen: Any) -> None:
    got = _embeddings(handler, qwen_service, {"inputs": TEXTS, "parameters": {"prompt_name": "query"}})
    expected = st_qwen.encode(TEXTS, prompt_name="query", normalize_embeddings=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, _embeddings(handler, qwen_service, {"inputs": TEXTS}), atol=1e-3)


def test_batch_equals_one_at_a_time(handler: ModuleType, qwen_service: Any) -> None:
    batch = _embeddings(handler, qwen_service, {"inputs": TEXTS})
    single = np.concatenate([_embeddings(handler, qwen_service, {"inputs": text}) for text in TEXTS])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_unknown_prompt_lists_the_available_ones(handler: ModuleType, qwen_service: Any) -> None:
    import pytest

    with pytest.raises(sibling("serving_errors").InvalidInput) as info:
        invoke(handler, qwen_service, {"inputs": "x", "parameters": {"prompt_name": "passage"}})
    assert info.value.status_code == 400
    assert "available: document, query" in str(info.value)


def test_search_applies_the_query_prompt_to_the_query_only(
    handler: ModuleType, qwen_service: Any, st_qwen: Any
) -> None:
    raw, _ = invoke(handler, qwen_service, {"query": "who won the world cup?", "documents": TEXTS, "top_k": 4})
    results = json.loads(raw)["results"]
    query = st_qwen.encode(["who won the world cup?"], prompt_name="query", normalize_embeddings=True)
    docs = st_qwen.encode(TEXTS, normalize_embeddings=True)
    cosine = (docs @ query.T)[:, 0]
    assert [r["index"] for r in results] == list(np.argsort(-cosine))
    for r in results:
        assert abs(r["score"] - float(cosine[r["index"]])) < 1e-5
