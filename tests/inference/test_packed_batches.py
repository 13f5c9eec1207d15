"""Packed embedding batches: the real tokens only, the same vectors as padded batches, and padded batches
wherever packing would change them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from tests.inference.conftest import _model_fn_with_clean_env
from tests.inference.handler_loader import invoke, sibling

# From one token to past MiniLM's 256-token limit, so batches mix lengths and one text is truncated.
TEXTS = ["ok", "A man is eating food.", "The new movie is awesome " * 8, "semantic search over long documents " * 60,
         "Berlin is the capital of Germany", "Ein Mann isst Essen.", "a"]
PADDED = {"LOCALMAKER_PACKED_BATCHES": "0"}


def _vectors(handler: ModuleType, service: Any, texts: list[str]) -> np.ndarray:
    raw, _ = invoke(handler, service, {"inputs": texts})
    return np.array(json.loads(raw)["embeddings"])


@pytest.mark.parametrize("mask", [
    [[1, 1, 1, 0], [1, 1, 0, 0]],  # right padding (BERT)
    [[0, 1, 1, 1], [0, 0, 1, 1]],  # left padding (Qwen3-Embedding)
])
def test_packing_finds_each_token_s_text_and_position_whichever_side_pads(mask) -> None:
    packing = sibling("packed_encoder").Packing.of(torch.tensor(mask))
    assert packing.positions.tolist() == [0, 1, 2, 0, 1]
    (group,) = packing.groups  # 2 tokens are over half of 3: one attention call
    assert group.tokens.tolist() == [0, 1, 2, 3, 4]
    assert group.rows.tolist() == [0, 0, 0, 1, 1]
    assert group.real.tolist() == [[True, True, True], [True, True, False]]
    packed = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(1, 2, 5, 3)  # [1, heads, tokens, dim]
    spread = group.spread(packed)
    assert spread.shape == (2, 2, 3, 3)
    assert float(spread[1, :, 2].abs().sum()) == 0.0  # the second text has no third token
    assert torch.equal(group.gather(spread.transpose(1, 2)), packed[0].transpose(0, 1))


def test_attention_runs_in_groups_of_like_length() -> None:
    lengths = [4, 10, 3, 9]
    mask = torch.tensor([[1] * n + [0] * (10 - n) for n in lengths])
    packing = sibling("packed_encoder").Packing.of(mask)
    assert [group.real.shape for group in packing.groups] == [(2, 10), (2, 4)]
    first_tokens = {int(group.tokens[0]) for group in packing.groups}
    assert first_tokens == {4, 0}  # the texts of 10 and 9 tokens start at 4; those of 4 and 3 at 0
    assert sorted(int(token) for group in packing.groups for token in group.tokens) == list(range(26))


def test_a_row_without_tokens_joins_no_attention_group() -> None:
    packing = sibling("packed_encoder").Packing.of(torch.tensor([[1, 1, 0], [0, 0, 0]]))
    assert packing.positions.tolist() == [0, 1]
    assert [group.real.shape for group in packing.groups] == [(1, 2)]


@pytest.mark.parametrize("model", ["minilm", "qwen"])
def test_packed_vectors_equal_padded_ones(handler: ModuleType, minilm_dir: Path, tiny_qwen3_dir: Path,
                                          model: str) -> None:
    model_dir = minilm_dir if model == "minilm" else tiny_qwen3_dir
    packed = _model_fn_with_clean_env(handler, model_dir)
    padded = _model_fn_with_clean_env(handler, model_dir, **PADDED)
    assert (packed.model.packed, padded.model.packed) == (True, False)
    np.testing.assert_allclose(_vectors(handler, packed, TEXTS), _vectors(handler, padded, TEXTS), atol=1e-5)


def test_minilm_packed_equals_sentence_transformers(handler: ModuleType, minilm_service: Any, st_minilm: Any) -> None:
    assert minilm_service.model.packed
    expected = st_minilm.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(_vectors(handler, minilm_service, TEXTS), expected, atol=1e-5)


def test_a_packed_model_refuses_a_padded_call(minilm_service: Any) -> None:
    """transformers builds no attention mask for an attention function it does not know, so a padded call
    to the switched model would let texts attend to padding; it fails instead."""
    tokenizer = minilm_service.model.tokenizer
    padded = tokenizer(["short", "a longer text than that"], padding=True, return_tensors="pt")
    with pytest.raises(sibling("packed_encoder").PackingUnsupported), torch.inference_mode():
        minilm_service.model.transformer(**padded)


def test_a_model_without_sdpa_attention_is_not_packed(minilm_dir: Path) -> None:
    from transformers import AutoModel

    eager = AutoModel.from_pretrained(str(minilm_dir), attn_implementation="eager").eval()
    assert sibling("packed_encoder").packed_encoder(eager) is None
    assert eager.config._attn_implementation == "eager"


def test_a_sliding_window_model_serves_padded_batches(handler: ModuleType, tiny_qwen3_dir: Path, st_qwen: Any,
                                                      tmp_path: Path) -> None:
    """Packed attention carries no window, so the start-up check fails and the model is served padded,
    with its attention switched back to SDPA."""
    model_dir = shutil.copytree(tiny_qwen3_dir, tmp_path / "windowed")
    config = json.loads((model_dir / "config.json").read_text())
    config.update(use_sliding_window=True, sliding_window=4, max_window_layers=0,
                  layer_types=["sliding_attention"] * config["num_hidden_layers"])
    (model_dir / "config.json").write_text(json.dumps(config))
    service = _model_fn_with_clean_env(handler, model_dir)
    assert not service.model.packed
    assert service.model.transformer.config._attn_implementation == "sdpa"
    windowed = _vectors(handler, service, TEXTS)
    np.testing.assert_allclose(windowed, _vectors(handler, _model_fn_with_clean_env(handler, model_dir, **PADDED),
                                                  TEXTS), atol=1e-6)
    # The window is real: the same weights without it give other vectors for the long texts.
    assert not np.allclose(windowed, st_qwen.encode(TEXTS, normalize_embeddings=True), atol=1e-3)


def test_packed_requests_batch_in_arrival_order(minilm_service: Any) -> None:
    """A packed model pads nothing, so its prepared requests declare no length to batch by."""
    request = sibling("request_schema").parse_embedding_request({"inputs": ["a", "a much longer text here"]})
    assert minilm_service.prepare(request).batch_length is None


def test_packed_batches_can_be_switched_off_and_on(handler: ModuleType, minilm_dir: Path) -> None:
    settings = sibling("handler_settings")
    assert settings.HandlerSettings.from_env({}).packed_batches is None
    assert settings.HandlerSettings.from_env({"LOCALMAKER_PACKED_BATCHES": "1"}).packed_batches is True
    assert settings.HandlerSettings.from_env(PADDED).packed_batches is False
    with pytest.raises(sibling("serving_errors").ModelLoadError, match="LOCALMAKER_PACKED_BATCHES"):
        settings.HandlerSettings.from_env({"LOCALMAKER_PACKED_BATCHES": "sometimes"})
