"""model_fn: what kind of directory it serves, and the environment it honours."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from tests.inference.conftest import linked_model_dir
from tests.inference.handler_loader import invoke, sibling

errors = sibling("serving_errors")


def test_a_diffusers_pipeline_of_another_class_is_refused_clearly(handler: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    with pytest.raises(errors.ModelLoadError, match="'StableDiffusionXLPipeline'.*serves StableDiffusionPipeline"):
        handler.model_fn(str(tmp_path))


def test_a_dir_without_config_is_refused(handler: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(errors.ModelLoadError, match="model_index.json.*config.json"):
        handler.model_fn(str(tmp_path))


def test_pickled_weights_need_the_opt_in(
    handler: ModuleType, tiny_qwen3_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModel

    model_dir = tmp_path / "pickled"
    model_dir.mkdir()
    for entry in tiny_qwen3_dir.iterdir():
        if entry.name != "model.safetensors" and not entry.name.startswith("."):
            (model_dir / entry.name).symlink_to(entry)
    (model_dir / "config.json").unlink()
    model = AutoModel.from_pretrained(str(tiny_qwen3_dir))
    model.config.save_pretrained(model_dir)
    torch.save(model.state_dict(), model_dir / "pytorch_model.bin")
    assert not list(model_dir.glob("*.safetensors"))

    with pytest.raises(errors.ModelLoadError, match="LOCALMAKER_ALLOW_PICKLE=1"):
        handler.model_fn(str(model_dir))

    monkeypatch.setenv("LOCALMAKER_ALLOW_PICKLE", "1")
    service = handler.model_fn(str(model_dir))
    raw, _ = invoke(handler, service, {"inputs": "hello"})
    assert len(json.loads(raw)["embeddings"][0]) == service.model.dimension


def test_invalid_pooling_env_fails_model_fn(
    handler: ModuleType, tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALMAKER_POOLING", "max")
    with pytest.raises(errors.ModelLoadError, match="LOCALMAKER_POOLING='max'.*mean, last_token, cls"):
        handler.model_fn(str(tiny_qwen3_dir))


def test_pooling_env_overrides_the_model_files(
    handler: ModuleType, tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALMAKER_POOLING", "cls")
    assert handler.model_fn(str(tiny_qwen3_dir)).model.layout.pooling == "cls"


def test_defaults_on_cpu(qwen_service: object) -> None:
    model = qwen_service.model  # type: ignore[attr-defined]
    assert model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if model.device.type == "cpu":
        assert model.dtype == torch.float32
    assert model.transformer.training is False
    assert model.max_length == 512


def test_dtype_and_device_env(handler: ModuleType, tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALMAKER_DEVICE", "cpu")
    monkeypatch.setenv("LOCALMAKER_DTYPE", "bfloat16")
    service = handler.model_fn(str(tiny_qwen3_dir))
    assert service.model.device == torch.device("cpu")
    assert next(service.model.transformer.parameters()).dtype == torch.bfloat16
    raw, _ = invoke(handler, service, {"inputs": ["a", "b c"]})
    vectors = np.array(json.loads(raw)["embeddings"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_cuda_device_without_cuda_is_a_clear_error(
    handler: ModuleType, tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.setenv("LOCALMAKER_DEVICE", "cuda:0")
    with pytest.raises(errors.ModelLoadError, match="LOCALMAKER_DEVICE"):
        handler.model_fn(str(tiny_qwen3_dir))


def test_a_symlinked_copy_embeds_like_the_original(
    handler: ModuleType, tiny_qwen3_dir: Path, tmp_path: Path, qwen_service: object
) -> None:
    copy = handler.model_fn(str(linked_model_dir(tiny_qwen3_dir, tmp_path / "m")))
    assert copy.model.fingerprint == qwen_service.model.fingerprint  # type: ignore[attr-defined]
