"""A prepared embedding request tells the model thread how long it is, so like lengths batch together
when the model pads its batches (test_packed_batches.py: a packed model's requests declare no length)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from tests.inference.conftest import _model_fn_with_clean_env


def test_a_prepared_request_reports_its_longest_text_in_tokens(handler: ModuleType, minilm_dir: Path) -> None:
    padded = _model_fn_with_clean_env(handler, minilm_dir, LOCALMAKER_PACKED_BATCHES="0")
    texts = ["short", "a much longer sentence that takes many more tokens than the first one does"]
    prepared = handler.prepare_fn({"inputs": texts}, padded)
    lengths = [len(ids) for ids in padded.model.tokenizer(texts)["input_ids"]]
    assert lengths[0] < lengths[1]
    assert prepared.batch_length == lengths[1]
    search = handler.prepare_fn({"query": "q", "documents": texts}, padded)
    assert search.batch_length == lengths[1]  # the query and its documents run in one pass
