"""Pooling, truncation and prompts are read from the sentence-transformers files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.inference.handler_loader import sibling

layout_mod = sibling("embedding_layout")
errors = sibling("serving_errors")


def _write_pooling(model_dir: Path, config: dict[str, object]) -> None:
    (model_dir / "modules.json").write_text(
        json.dumps([{"idx": 1, "name": "1", "path": "pool", "type": "sentence_transformers.models.Pooling"}])
    )
    (model_dir / "pool").mkdir()
    (model_dir / "pool" / "config.json").write_text(json.dumps(config))


def test_minilm_declares_mean_pooling_and_256_tokens(minilm_dir: Path) -> None:
    layout = layout_mod.read_layout(minilm_dir)
    assert (layout.pooling, layout.max_seq_length, layout.prompts, layout.include_prompt) == ("mean", 256, {}, True)


def test_tiny_qwen3_declares_last_token_pooling_and_prompts(tiny_qwen3_dir: Path) -> None:
    layout = layout_mod.read_layout(tiny_qwen3_dir)
    assert layout.pooling == "last_token"
    assert layout.prompts["query"].startswith("Instruct: ")
    assert layout.prompts["document"] == ""


def test_a_bare_transformers_dir_gets_mean_pooling(tmp_path: Path) -> None:
    assert layout_mod.read_layout(tmp_path) == layout_mod.EmbeddingLayout()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"pooling_mode_cls_token": True}, "cls"),
        ({"pooling_mode": "lasttoken"}, "last_token"),
        ({"pooling_mode": ["mean"]}, "mean"),
        ({}, "mean"),
    ],
)
def test_pooling_config_forms(tmp_path: Path, config: dict[str, object], expected: str) -> None:
    _write_pooling(tmp_path, config)
    assert layout_mod.read_layout(tmp_path).pooling == expected


def test_include_prompt_false_is_read(tmp_path: Path) -> None:
    _write_pooling(tmp_path, {"pooling_mode_mean_tokens": True, "include_prompt": False})
    assert layout_mod.read_layout(tmp_path).include_prompt is False


def test_unsupported_pooling_points_at_the_override(tmp_path: Path) -> None:
    _write_pooling(tmp_path, {"pooling_mode_max_tokens": True})
    with pytest.raises(errors.ModelLoadError, match="LOCALMAKER_POOLING"):
        layout_mod.read_layout(tmp_path)
    assert layout_mod.read_layout(tmp_path, pooling_override="cls").pooling == "cls"
