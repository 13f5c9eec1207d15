"""A prepared embedding request tells the model thread how long it is, so like lengths batch together."""

from __future__ import annotations

from types import ModuleType
from typing import Any


def test_a_prepared_request_reports_its_longest_text_in_tokens(handler: ModuleType, minilm_service: Any) -> None:
    texts = ["short", "a much longer sentence that takes many more tokens than the first one does"]
    prepared = handler.prepare_fn({"inputs": texts}, minilm_service)
    lengths = [len(ids) for ids in minilm_service.model.tokenizer(texts)["input_ids"]]
    assert lengths[0] < lengths[1]
    assert prepared.batch_length == lengths[1]
    search = handler.prepare_fn({"query": "q", "documents": texts}, minilm_service)
    assert search.batch_length == lengths[1]  # the query and its documents run in one pass
