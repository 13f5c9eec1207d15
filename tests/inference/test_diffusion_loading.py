"""What model_fn decides from the pipeline directory and the environment: LoRA, safety checker, weights, dtype."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from tests.inference.conftest import linked_model_dir
from tests.inference.handler_loader import json_images, sibling, text_to_image

errors = sibling("serving_errors")


@pytest.fixture(scope="module")
def lora_dir(tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-sd plus a UNet LoRA in the stock diffusers format, in a linked copy (the fixture stays intact)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    model_dir = linked_model_dir(tiny_sd_dir, tmp_path_factory.mktemp("tiny-sd-lora"))
    unet = UNet2DConditionModel.from_pretrained(str(tiny_sd_dir), subfolder="unet")
    config = LoraConfig(
        r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"]
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet.add_adapter(config)
        # "gaussian" init draws lora_A at random but zeroes lora_B (so a fresh LoRA is a no-op), and scaling
        # zeros does nothing: fill lora_B with seeded noise instead, strong enough to change the image.
        with torch.no_grad():
            for name, param in unet.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn_like(param) * 0.5)
    StableDiffusionPipeline.save_lora_weights(str(model_dir), unet_lora_layers=get_peft_model_state_dict(unet))
    assert (model_dir / "pytorch_lora_weights.safetensors").is_file()
    assert not (tiny_sd_dir / "pytorch_lora_weights.safetensors").exists()
    return model_dir


@pytest.fixture(scope="module")
def lora_service(handler: ModuleType, lora_dir: Path) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:
        for name in ("LOCALMAKER_DEVICE", "LOCALMAKER_DTYPE", "LOCALMAKER_ALLOW_PICKLE"):
            mp.delenv(name, raising=False)
        yield handler.model_fn(str(lora_dir))


@pytest.fixture(scope="module")
def safety_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from localmaker.model.builders.tiny_sd import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd-safety"), with_safety_checker=True)


def _image(handler: ModuleType, service: Any, **parameters: Any) -> np.ndarray:
    return json_images(text_to_image(handler, service, seed=21, num_inference_steps=3, **parameters)[0])[0]


def test_a_lora_is_loaded_and_its_scale_applies_per_request(
    handler: ModuleType, lora_service: Any, sd_service: Any
) -> None:
    assert lora_service.model.lora_loaded is True
    full = _image(handler, lora_service, lora_scale=1.0)
    off = _image(handler, lora_service, lora_scale=0.0)
    half = _image(handler, lora_service, lora_scale=0.5)
    base = _image(handler, sd_service)
    assert np.abs(full.astype(int) - off.astype(int)).mean() > 1
    assert not np.array_equal(half, full) and not np.array_equal(half, off)
    # At scale 0 each LoRA layer adds its branch times 0.0, i.e. exact zeros, so the image is the base model's
    # bit for bit (no tolerance needed on the CPU).
    np.testing.assert_array_equal(off, base)
    # The default is 1.0, and a scale applies to its request only.
    np.testing.assert_array_equal(_image(handler, lora_service), full)


def test_lora_scale_is_reported(handler: ModuleType, lora_service: Any) -> None:
    body = json.loads(text_to_image(handler, lora_service, num_inference_steps=1)[0])
    assert body["parameters"]["lora_scale"] == 1.0
    body = json.loads(text_to_image(handler, lora_service, num_inference_steps=1, lora_scale=0.25)[0])
    assert body["parameters"]["lora_scale"] == 0.25


def test_a_pickled_lora_needs_the_opt_in(handler: ModuleType, tiny_sd_dir: Path, tmp_path: Path) -> None:
    model_dir = linked_model_dir(tiny_sd_dir, tmp_path / "m")
    torch.save({}, model_dir / "pytorch_lora_weights.bin")
    with pytest.raises(errors.ModelLoadError, match="pickled LoRA.*LOCALMAKER_ALLOW_PICKLE=1"):
        handler.model_fn(str(model_dir))


def test_pickle_only_weights_need_the_opt_in(
    handler: ModuleType, tiny_sd_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import UNet2DConditionModel

    model_dir = tmp_path / "pickled"
    model_dir.mkdir()
    for entry in tiny_sd_dir.iterdir():
        if entry.name != "unet":
            (model_dir / entry.name).symlink_to(entry)
    unet = UNet2DConditionModel.from_pretrained(str(tiny_sd_dir), subfolder="unet")
    unet.save_pretrained(model_dir / "unet", safe_serialization=False)
    assert not list((model_dir / "unet").glob("*.safetensors"))

    with pytest.raises(errors.ModelLoadError, match="no \\*.safetensors weights for unet.*LOCALMAKER_ALLOW_PICKLE=1"):
        handler.model_fn(str(model_dir))

    monkeypatch.setenv("LOCALMAKER_ALLOW_PICKLE", "1")
    service = handler.model_fn(str(model_dir))
    raw, _ = text_to_image(handler, service, accept="image/png", seed=4, num_inference_steps=1)
    assert raw.startswith(b"\x89PNG")


def test_the_safety_checker_is_kept_when_the_pipeline_ships_one(handler: ModuleType, safety_dir: Path) -> None:
    service = handler.model_fn(str(safety_dir))
    assert service.model.safety_checker is True and service.model.pipe.safety_checker is not None
    body = json.loads(text_to_image(handler, service, num_images_per_prompt=2, num_inference_steps=1, seed=0)[0])
    flags = body["nsfw_content_detected"]
    assert isinstance(flags, list) and len(flags) == 2 and all(isinstance(flag, bool) for flag in flags)
    assert set(body) == {"images", "seeds", "parameters", "timings", "warnings", "nsfw_content_detected"}


def test_the_safety_checker_can_be_turned_off(
    handler: ModuleType, safety_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALMAKER_SAFETY_CHECKER", "0")
    service = handler.model_fn(str(safety_dir))
    assert service.model.safety_checker is False and service.model.pipe.safety_checker is None
    assert service.model.pipe.config.requires_safety_checker is False
    body = json.loads(text_to_image(handler, service, num_inference_steps=1)[0])
    assert "nsfw_content_detected" not in body


def test_dtype_env_is_honoured(handler: ModuleType, tiny_sd_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALMAKER_DEVICE", "cpu")
    monkeypatch.setenv("LOCALMAKER_DTYPE", "bfloat16")
    service = handler.model_fn(str(tiny_sd_dir))
    assert service.model.dtype == torch.bfloat16
    assert next(service.model.pipe.unet.parameters()).dtype == torch.bfloat16
    (image,) = json_images(text_to_image(handler, service, num_inference_steps=1, seed=1)[0])
    assert image.shape == (64, 64, 3)


def test_torch_compile_is_a_cuda_only_option(
    handler: ModuleType, tiny_sd_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LOCALMAKER_DEVICE", "cpu")
    monkeypatch.setenv("LOCALMAKER_TORCH_COMPILE", "1")
    with caplog.at_level("WARNING"):
        service = handler.model_fn(str(tiny_sd_dir))
    assert service.model.compiled is False
    assert "LOCALMAKER_TORCH_COMPILE=1 is ignored on cpu" in caplog.text


def test_the_dtype_defaults_to_float16_on_cuda() -> None:
    placement = sibling("device_placement")
    cuda = torch.device("cuda")
    assert placement.resolve_dtype(cuda, None, cuda_default=torch.float16) == torch.float16
    assert placement.resolve_dtype(cuda, "bfloat16", cuda_default=torch.float16) == torch.bfloat16
    assert placement.resolve_dtype(torch.device("cpu"), None, cuda_default=torch.float16) == torch.float32
