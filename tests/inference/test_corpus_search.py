"""Searching the corpus packed next to the model, and its on-disk embedding cache."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.inference.handler_loader import invoke, sibling

errors = sibling("serving_errors")

DOCS: list[dict[str, Any]] = [
    {"id": "pt", "text": "Ronaldo plays for Portugal."},
    {"id": 7, "text": "Argentina won the FIFA World Cup in Qatar in 2022."},
    {"text": "A cat sat on the mat."},
]


def _write_jsonl(model_dir: Path, docs: list[dict[str, Any]]) -> None:
    (model_dir / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n", encoding="utf-8")


def _search(handler: ModuleType, service: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    raw, _ = invoke(handler, service, body)
    results: list[dict[str, Any]] = json.loads(raw)["results"]
    return results


def test_jsonl_corpus_is_searched_with_ids(
    handler: ModuleType, qwen_copy: Path, monkeypatch: pytest.MonkeyPatch, st_qwen: Any
) -> None:
    _write_jsonl(qwen_copy, DOCS)
    service = handler.model_fn(str(qwen_copy))
    results = _search(handler, service, {"query": "who won the world cup?", "top_k": 10})

    assert len(results) == 3
    by_index = {r["index"]: r for r in results}
    assert by_index[0]["id"] == "pt" and by_index[1]["id"] == 7 and "id" not in by_index[2]
    assert [by_index[i]["text"] for i in range(3)] == [d["text"] for d in DOCS]
    query = st_qwen.encode(["who won the world cup?"], prompt_name="query", normalize_embeddings=True)
    docs = st_qwen.encode([d["text"] for d in DOCS], normalize_embeddings=True)
    cosine = (docs @ query.T)[:, 0]
    assert [r["index"] for r in results] == list(np.argsort(-cosine))
    for r in results:
        assert abs(r["score"] - float(cosine[r["index"]])) < 1e-5


def test_txt_corpus_has_one_document_per_non_empty_line(handler: ModuleType, qwen_copy: Path) -> None:
    (qwen_copy / "corpus.txt").write_text("first doc\n\n  \nsecond doc\nthird doc\n", encoding="utf-8")
    service = handler.model_fn(str(qwen_copy))
    results = _search(handler, service, {"query": "doc"})
    assert sorted(r["text"] for r in results) == ["first doc", "second doc", "third doc"]
    assert all("id" not in r for r in results)


def test_inline_documents_take_precedence_over_the_corpus(handler: ModuleType, qwen_copy: Path) -> None:
    _write_jsonl(qwen_copy, DOCS)
    service = handler.model_fn(str(qwen_copy))
    results = _search(handler, service, {"query": "q", "documents": ["only this"]})
    assert [r["text"] for r in results] == ["only this"]


def test_cache_is_written_beside_the_model_and_reused(
    handler: ModuleType, qwen_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_jsonl(qwen_copy, DOCS)
    first = handler.model_fn(str(qwen_copy))
    assert first.corpus.loaded_from_cache is False
    assert first.corpus.cache_path.parent == qwen_copy / ".localmaker-cache"
    assert first.corpus.cache_path.is_file()

    with caplog.at_level(logging.INFO):
        second = handler.model_fn(str(qwen_copy))
    assert second.corpus.loaded_from_cache is True
    assert second.corpus.cache_path == first.corpus.cache_path
    assert any("from cache" in record.getMessage() for record in caplog.records)
    np.testing.assert_array_equal(second.corpus.vectors, first.corpus.vectors)


def test_changing_the_corpus_invalidates_the_cache(handler: ModuleType, qwen_copy: Path) -> None:
    _write_jsonl(qwen_copy, DOCS)
    first = handler.model_fn(str(qwen_copy))
    _write_jsonl(qwen_copy, [*DOCS, {"text": "A new document about tennis."}])
    second = handler.model_fn(str(qwen_copy))
    assert second.corpus.loaded_from_cache is False
    assert second.corpus.cache_path != first.corpus.cache_path
    assert second.corpus.vectors.shape[0] == 4


def test_changing_the_pooling_invalidates_the_cache(
    handler: ModuleType, qwen_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_jsonl(qwen_copy, DOCS)
    first = handler.model_fn(str(qwen_copy))
    monkeypatch.setenv("LOCALMAKER_POOLING", "mean")
    second = handler.model_fn(str(qwen_copy))
    assert second.corpus.loaded_from_cache is False
    assert second.corpus.cache_path != first.corpus.cache_path


def test_cache_dir_from_the_environment(
    handler: ModuleType, qwen_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_jsonl(qwen_copy, DOCS)
    monkeypatch.setenv("LOCALMAKER_CACHE_DIR", str(tmp_path / "cache"))
    service = handler.model_fn(str(qwen_copy))
    assert service.corpus.cache_path.parent == tmp_path / "cache"
    assert not (qwen_copy / ".localmaker-cache").exists()
    cached = np.load(service.corpus.cache_path, allow_pickle=False)
    assert cached.dtype == np.float32 and cached.shape == (3, service.model.dimension)


def test_unwritable_cache_dirs_fall_back_to_the_models_folder_then_a_temp_dir(
    handler: ModuleType, qwen_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_jsonl(qwen_copy, DOCS)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LOCALMAKER_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    service = handler.model_fn(str(qwen_copy))
    assert service.corpus.cache_path.parent == qwen_copy / ".localmaker-cache"

    shutil.rmtree(qwen_copy / ".localmaker-cache")
    (qwen_copy / ".localmaker-cache").write_text("not a directory either")
    service = handler.model_fn(str(qwen_copy))
    assert service.corpus.cache_path.parent == tmp_path / "tmp" / "localmaker-cache"
    assert handler.model_fn(str(qwen_copy)).corpus.loaded_from_cache is True


def test_a_large_corpus_shows_progress_on_stderr(
    handler: ModuleType, qwen_copy: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    (qwen_copy / "corpus.txt").write_text("\n".join(f"document {i}" for i in range(9)) + "\n")
    monkeypatch.setenv("LOCALMAKER_BATCH_SIZE", "2")
    service = handler.model_fn(str(qwen_copy))
    assert service.corpus.vectors.shape[0] == 9
    assert "embedding corpus" in capfd.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "ok"}\nnot json\n', "line 2 is not JSON"),
        ('{"id": "a"}\n', '"text"'),
        ('{"text": "ok", "id": [1]}\n', '"id"'),
        ("\n\n", "no documents"),
    ],
)
def test_a_broken_corpus_fails_model_fn_with_the_line(
    handler: ModuleType, qwen_copy: Path, content: str, message: str
) -> None:
    (qwen_copy / "corpus.jsonl").write_text(content, encoding="utf-8")
    with pytest.raises(errors.ModelLoadError, match="corpus.jsonl") as info:
        handler.model_fn(str(qwen_copy))
    assert message in str(info.value)
