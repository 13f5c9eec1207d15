"""Diffusion requests at their edges: bounded truncation warnings, an ignored negative prompt said out loud, a
406 before any work, joint batches that keep each request's scheduler, and a text-encoder LoRA scale that
survives a failure."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from localmaker.local_endpoint.context import InvocationContext
from tests.inference.conftest import linked_model_dir
from tests.inference.handler_loader import json_images, sibling, text_to_image

errors = sibling("serving_errors")
diffusion_request = sibling("diffusion_request")


def _request(prompt: str = "a cat", **parameters: Any) -> Any:
    parameters.setdefault("num_inference_steps", 2)
    return diffusion_request.DiffusionRequest(prompt, diffusion_request.DiffusionParameters(**parameters))


def _pixels(result: Any) -> list[np.ndarray]:
    return [np.asarray(image).astype(int) for image in result.images]


@contextmanager
def _unet_calls(service: Any) -> Iterator[dict[str, int]]:
    """Counts the loaded UNet's forward passes (observes only; the pipeline runs as it always does)."""
    calls = {"n": 0}

    def count(module: torch.nn.Module, args: Any) -> None:
        calls["n"] += 1

    handle = service.model.pipe.unet.register_forward_pre_hook(count)
    try:
        yield calls
    finally:
        handle.remove()


# 1. The truncation warning quotes the start of what was dropped, not all of it.

def test_a_huge_prompt_gives_a_short_warning_that_counts_what_was_dropped(
    handler: ModuleType, sd_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    prompt = "a photo of a cat " * 20 + "riding a horse on the moon at sunset " * 400  # 3,225 dropped tokens
    with caplog.at_level(logging.WARNING):
        raw, _ = text_to_image(handler, sd_service, prompt=prompt, seed=2, num_inference_steps=1)
    logged = [record.getMessage() for record in caplog.records]
    assert any("CLIP reads the first 77" in message for message in logged)
    assert max(map(len, logged)) < 1000  # diffusers' own message, which quotes it all, is not among them
    (warning,) = json.loads(raw)["warnings"]
    assert len(warning) < 400, len(warning)
    assert warning.startswith("prompt is 3302 tokens; CLIP reads the first 77, the rest (3225 tokens) was ignored: '")
    assert warning.endswith("…'")
    assert "riding a horse on the moon at sunset riding a horse" in warning  # the start of the dropped part


def test_a_short_dropped_tail_is_quoted_whole(handler: ModuleType, sd_service: Any) -> None:
    prompt = "a photo of a cat " * 20 + "riding a horse"
    (warning,) = json.loads(text_to_image(handler, sd_service, prompt=prompt, num_inference_steps=1)[0])["warnings"]
    dropped = "a photo of a cat " * 5 + "riding a horse"  # 75 text tokens are read, these 28 are not
    assert warning.endswith(f"the rest (28 tokens) was ignored: '{dropped}'")


# 2. A negative prompt does nothing without classifier-free guidance, and the response says so.

@pytest.mark.parametrize("guidance", [1.0, 0.0])
def test_a_negative_prompt_without_guidance_is_flagged(handler: ModuleType, sd_service: Any, guidance: float) -> None:
    raw, _ = text_to_image(handler, sd_service, seed=4, guidance_scale=guidance, negative_prompt="fog")
    body = json.loads(raw)
    (warning,) = body["warnings"]
    assert '"parameters.negative_prompt" had no effect' in warning and f"guidance_scale {guidance:g}" in warning
    assert '"parameters.guidance_scale" above 1' in warning
    assert body["parameters"]["negative_prompt"] == "fog"  # still echoed: the warning says what it did
    # The warning is true: the same request without the negative prompt gives the same pixels.
    plain, _ = text_to_image(handler, sd_service, seed=4, guidance_scale=guidance)
    assert json.loads(plain)["images"] == body["images"]


def test_a_negative_prompt_with_guidance_has_no_warning(handler: ModuleType, sd_service: Any) -> None:
    raw, _ = text_to_image(handler, sd_service, guidance_scale=1.5, negative_prompt="fog", num_inference_steps=1)
    assert json.loads(raw)["warnings"] == []


# 3. An Accept that cannot carry the request's images is refused before any generation.

@pytest.mark.parametrize("header", ["Accept", "accept"])
def test_an_image_accept_for_several_images_is_406_before_generating(
    handler: ModuleType, sd_service: Any, header: str
) -> None:
    context = InvocationContext(model_dir=Path("."), headers={header: "image/png"})
    body = {"inputs": "a cat", "parameters": {"num_images_per_prompt": 2, "num_inference_steps": 1}}
    with _unet_calls(sd_service) as calls:
        for hook in (handler.prepare_fn, handler.predict_fn):  # the batched and the one-at-a-time paths
            with pytest.raises(errors.UnsupportedAccept) as info:
                hook(body, sd_service, context=context)
            assert info.value.status_code == 406
            assert info.value.message == (
                "Accept 'image/png' carries exactly one image but this request asks for 2: ask for "
                "application/json (images as base64 PNG), or set num_images_per_prompt to 1."
            )
        with pytest.raises(errors.UnsupportedAccept):  # nothing the handler can produce: also refused up front
            handler.prepare_fn({"inputs": "a cat"}, sd_service, context=InvocationContext(
                model_dir=Path("."), headers={header: "text/csv"}))
    assert calls["n"] == 0


def test_accepts_the_images_fit_still_generate(handler: ModuleType, sd_service: Any) -> None:
    body = {"inputs": "a cat", "parameters": {"num_images_per_prompt": 2, "num_inference_steps": 1}}
    for accept in ("image/png, application/json", None):
        headers = {} if accept is None else {"Accept": accept}
        plan = handler.prepare_fn(body, sd_service, context=InvocationContext(model_dir=Path("."), headers=headers))
        assert len(plan.seeds) == 2
    one = {"inputs": "a cat", "parameters": {"num_inference_steps": 1}}
    assert handler.prepare_fn(one, sd_service, context=InvocationContext(Path("."), headers={"Accept": "image/png"}))


# 4. A joint batch runs each request with the scheduler config it asked for.

def test_joint_batches_keep_each_requests_scheduler_config(sd_service: Any) -> None:
    from diffusers import DPMSolverMultistepScheduler

    # A model whose own scheduler is DPM-Solver's SDE variant: it resolves to the name "dpmpp_2m", as the
    # named "dpmpp_2m" does, but draws noise each step, so the two give visibly different images.
    sde = DPMSolverMultistepScheduler.from_config(sd_service.base_scheduler.config, algorithm_type="sde-dpmsolver++")
    model = dataclasses.replace(sd_service.model, pipe=sd_service.model.with_scheduler(sde))
    service = type(sd_service)(model, sd_service.max_pixels, joint_batches=True)
    own, named = (service.prepare(_request(seed=5, scheduler=name)) for name in (None, "dpmpp_2m"))
    assert own.scheduler == named.scheduler == "dpmpp_2m"
    alone = [_pixels(service.run([plan])[0]) for plan in (own, named)]
    assert np.abs(alone[0][0] - alone[1][0]).mean() > 5  # the configs really differ
    together = [_pixels(result) for result in service.run([own, named])]
    for joint, single in zip(together, alone, strict=True):
        assert np.abs(joint[0] - single[0]).max() <= 2  # a joint call rounds a few pixels differently, no more


# 6. A failure inside encode_prompt does not leave the text encoder's LoRA scaled.

@pytest.fixture(scope="module")
def text_encoder_lora_service(handler: ModuleType, tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import CLIPTextModel

    model_dir = linked_model_dir(tiny_sd_dir, tmp_path_factory.mktemp("tiny-sd-te-lora"))
    text_encoder = CLIPTextModel.from_pretrained(str(tiny_sd_dir), subfolder="text_encoder")
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # peft directly, not transformers' add_adapter, which wants a newer peft than the one installed.
        text_encoder = inject_adapter_in_model(config, text_encoder)
        with torch.no_grad():  # a fresh LoRA's lora_B is zeros: make it change the embeddings
            for name, param in text_encoder.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn_like(param) * 0.5)
    state = text_encoder.state_dict()
    layers = {name.replace(".default", ""): value for name, value in state.items() if "lora_" in name}
    StableDiffusionPipeline.save_lora_weights(str(model_dir), text_encoder_lora_layers=layers)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("LOCALMAKER_DEVICE", "LOCALMAKER_DTYPE", "LOCALMAKER_ALLOW_PICKLE"):
            mp.delenv(name, raising=False)
        return handler.model_fn(str(model_dir))


def _scalings(service: Any) -> list[dict[str, float]]:
    return [dict(m.scaling) for m in service.model.pipe.text_encoder.modules() if hasattr(m, "scaling")]


def test_a_failure_in_the_text_encoder_leaves_its_lora_scale_as_it_was(
    handler: ModuleType, text_encoder_lora_service: Any
) -> None:
    service = text_encoder_lora_service
    scalings = _scalings(service)
    assert scalings, "the fixture's LoRA has text-encoder layers"

    def image(scale: float) -> np.ndarray:
        return json_images(text_to_image(handler, service, seed=6, num_inference_steps=1, lora_scale=scale)[0])[0]

    before = image(0.5)
    assert not np.array_equal(before, image(1.0))  # the text-encoder LoRA's scale shows in the image

    def fail(module: torch.nn.Module, args: Any, output: Any) -> None:
        raise RuntimeError("the text encoder failed after diffusers scaled its LoRA")

    handle = service.model.pipe.text_encoder.register_forward_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="scaled its LoRA"):
            text_to_image(handler, service, seed=6, num_inference_steps=1, lora_scale=0.5)
    finally:
        handle.remove()
    assert _scalings(service) == scalings
    np.testing.assert_array_equal(image(0.5), before)
