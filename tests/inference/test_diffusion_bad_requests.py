"""Bad text-to-image requests through the whole handler: 4xx naming the field, and the endpoint keeps serving."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from tests.inference.handler_loader import invoke, sibling, text_to_image

errors = sibling("serving_errors")

LONG_PROMPT = "a photo of a cat " * 20 + "riding a horse on the moon at sunset"


def _error(handler: ModuleType, service: Any, body: Any, **kwargs: str) -> Any:
    with pytest.raises(errors.InferenceError) as info:
        invoke(handler, service, body, **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"inputs": ""}, '"inputs"'),
        ({"inputs": "   "}, '"inputs"'),
        ({"parameters": {"seed": 1}}, '"inputs"'),
        ({"inputs": "x", "negative": "y"}, "'negative'"),
        ({"inputs": "x", "parameters": {"num_steps": 2}}, "'num_steps'"),
        ({"inputs": "x", "parameters": {"num_inference_steps": 0}}, '"parameters.num_inference_steps"'),
        ({"inputs": "x", "parameters": {"num_inference_steps": True}}, '"parameters.num_inference_steps"'),
        ({"inputs": "x", "parameters": {"guidance_scale": 31}}, '"parameters.guidance_scale"'),
        ({"inputs": "x", "parameters": {"seed": -3}}, '"parameters.seed"'),
        ({"inputs": "x", "parameters": {"height": 60}}, '"parameters.height"'),
        ({"inputs": "x", "parameters": {"width": 2048}}, '"parameters.width"'),
        ({"inputs": "x", "parameters": {"num_images_per_prompt": 9}}, '"parameters.num_images_per_prompt"'),
        ({"inputs": "x", "parameters": {"scheduler": "heun"}}, '"parameters.scheduler"'),
        ({"inputs": "x", "parameters": {"negative_prompt": 1}}, '"parameters.negative_prompt"'),
        ({"inputs": "x", "parameters": {"lora_scale": 1.0}}, "no LoRA adapter"),
        ({"inputs": "x", "parameters": {"lora_scale": 0}}, "no LoRA adapter"),
    ],
)
def test_bad_requests_are_400_naming_the_field(handler: ModuleType, sd_service: Any, body: Any, named: str) -> None:
    err = _error(handler, sd_service, body)
    assert isinstance(err, errors.InvalidInput) and err.status_code == 400
    assert named in err.message, err.message
    assert any(word in err.message for word in ("send", "use", "allowed", "remove", "omit"))


def test_lora_scale_without_a_lora_says_so(handler: ModuleType, sd_service: Any) -> None:
    err = _error(handler, sd_service, {"inputs": "x", "parameters": {"lora_scale": 0.5}})
    assert '"parameters.lora_scale"' in err.message and "pytorch_lora_weights.safetensors" in err.message


def test_a_wrong_content_type_is_415(handler: ModuleType, sd_service: Any) -> None:
    err = _error(handler, sd_service, {"inputs": "x"}, content_type="text/plain")
    assert err.status_code == 415 and "application/json" in err.message


def test_a_long_prompt_is_truncated_with_a_warning(handler: ModuleType, sd_service: Any) -> None:
    raw, _ = text_to_image(handler, sd_service, prompt=LONG_PROMPT, seed=2)
    (warning,) = json.loads(raw)["warnings"]
    assert warning.startswith("prompt is 110 tokens; CLIP reads the first 77, the rest (33 tokens) was ignored: '")
    assert warning.endswith("riding a horse on the moon at sunset'")
    # The ignored tail really was ignored: the image is the one any prompt with the same first 75 tokens gets.
    other_tail = "a photo of a cat " * 20 + "under the sea"
    other, _ = text_to_image(handler, sd_service, prompt=other_tail, seed=2)
    assert json.loads(other)["images"] == json.loads(raw)["images"]


def test_a_long_negative_prompt_is_reported_too(handler: ModuleType, sd_service: Any) -> None:
    raw, _ = text_to_image(handler, sd_service, negative_prompt=LONG_PROMPT, seed=2, num_inference_steps=1)
    (warning,) = json.loads(raw)["warnings"]
    assert warning.startswith("negative_prompt is 110 tokens; CLIP reads the first 77")


def test_a_prompt_at_the_limit_has_no_warning(handler: ModuleType, sd_service: Any) -> None:
    tokenizer = sd_service.model.pipe.tokenizer
    prompt = "cat " * 75
    assert len(tokenizer(prompt)["input_ids"]) == 77
    assert json.loads(text_to_image(handler, sd_service, prompt=prompt, num_inference_steps=1)[0])["warnings"] == []


def test_requests_over_the_pixel_budget_are_refused_before_any_work(handler: ModuleType, sd_service: Any) -> None:
    # The default budget is 4 x 768 x 768: eight 1024x1024 images would need 3.6 times that.
    err = _error(
        handler, sd_service, {"inputs": "x", "parameters": {"num_images_per_prompt": 8, "height": 1024, "width": 1024}}
    )
    assert isinstance(err, errors.InvalidInput) and err.status_code == 400
    assert "8 image(s) of 1024x1024 = 8388608 pixels" in err.message
    assert "limit of 2359296 pixels" in err.message and "LOCALMAKER_MAX_PIXELS" in err.message
    assert '"parameters.num_images_per_prompt" of at most 2 at 1024x1024' in err.message
    assert "height and width of at most 536 for 8 image(s)" in err.message


def test_the_pixel_budget_follows_the_environment(
    handler: ModuleType, tiny_sd_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALMAKER_MAX_PIXELS", str(2 * 64 * 64))
    service = handler.model_fn(str(tiny_sd_dir))
    assert service.max_pixels == 8192
    text_to_image(handler, service, num_images_per_prompt=2, num_inference_steps=1)  # exactly at the limit
    err = _error(handler, service, {"inputs": "x", "parameters": {"num_images_per_prompt": 3}})
    assert "limit of 8192 pixels" in err.message and "at most 2 at 64x64" in err.message
    err = _error(handler, service, {"inputs": "x", "parameters": {"height": 128, "width": 128}})
    assert "height and width of at most 88 for 1 image(s)" in err.message
