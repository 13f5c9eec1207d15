"""Semantic search over inline documents: ranking and scores against sentence-transformers cosine."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np

from tests.inference.handler_loader import invoke

QUERY = "Is ronaldo better than messi"
DOCUMENTS = [
    "Ronaldo scores goals grater than messi",
    "Ronaldo Plays for portugal",
    "Leonardo messi plays soccer",
    "Aegentina won FIFA worldcup",
]


def _search(handler: ModuleType, service: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    raw, content_type = invoke(handler, service, body)
    assert content_type == "application/json"
    results: list[dict[str, Any]] = json.loads(raw)["results"]
    return results


def test_seed_search_matches_sentence_transformers(handler: ModuleType, minilm_service: Any, st_minilm: Any) -> None:
    results = _search(handler, minilm_service, {"query": QUERY, "documents": DOCUMENTS, "top_k": 4})
    query = st_minilm.encode([QUERY], normalize_embeddings=True)
    docs = st_minilm.encode(DOCUMENTS, normalize_embeddings=True)
    cosine = (docs @ query.T)[:, 0]

    assert [r["rank"] for r in results] == [1, 2, 3, 4]
    assert [r["index"] for r in results] == list(np.argsort(-cosine))
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    for r in results:
        assert r["text"] == DOCUMENTS[r["index"]]
        assert abs(r["score"] - float(cosine[r["index"]])) < 1e-5
        assert "id" not in r


def test_top_k_defaults_to_five_and_is_clipped(handler: ModuleType, minilm_service: Any) -> None:
    assert len(_search(handler, minilm_service, {"query": QUERY, "documents": DOCUMENTS})) == 4
    assert len(_search(handler, minilm_service, {"query": QUERY, "documents": DOCUMENTS, "top_k": 2})) == 2
    many = [f"document {i}" for i in range(8)]
    assert len(_search(handler, minilm_service, {"query": QUERY, "documents": many})) == 5


def test_search_with_dimensions_uses_truncated_cosine(handler: ModuleType, minilm_service: Any, st_minilm: Any) -> None:
    body = {"query": QUERY, "documents": DOCUMENTS, "top_k": 4, "parameters": {"dimensions": 32}}
    results = _search(handler, minilm_service, body)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    query = unit(st_minilm.encode([QUERY])[:, :32])
    docs = unit(st_minilm.encode(DOCUMENTS)[:, :32])
    cosine = (docs @ query.T)[:, 0]
    for r in results:
        assert abs(r["score"] - float(cosine[r["index"]])) < 1e-5
