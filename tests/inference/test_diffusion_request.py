"""The text-to-image request schema, checked without a model: strict keys, strict types, inclusive ranges."""

from __future__ import annotations

from typing import Any

import pytest

from tests.inference.handler_loader import sibling

schema = sibling("diffusion_request")
schedulers = sibling("diffusion_schedulers")
errors = sibling("serving_errors")

FIX_WORDS = ("send", "use", "allowed", "remove", "omit")


def _error(body: Any) -> Any:
    with pytest.raises(errors.InvalidInput) as info:
        schema.parse_diffusion_request(body)
    assert info.value.status_code == 400
    assert any(word in info.value.message for word in FIX_WORDS), info.value.message
    return info.value


def test_defaults_when_only_a_prompt_is_sent() -> None:
    request = schema.parse_diffusion_request({"inputs": "a red fox"})
    assert request.prompt == "a red fox"
    assert request.parameters == schema.DiffusionParameters()
    params = request.parameters
    assert (params.guidance_scale, params.num_inference_steps, params.num_images_per_prompt) == (7.5, 30, 1)
    assert (params.seed, params.height, params.width, params.scheduler, params.lora_scale) == (None,) * 5
    assert params.negative_prompt is None


def test_every_parameter_is_parsed() -> None:
    request = schema.parse_diffusion_request(
        {
            "inputs": "a red fox",
            "parameters": {
                "negative_prompt": "blurry",
                "guidance_scale": 0,
                "num_inference_steps": 150,
                "seed": 2**32 - 1,
                "height": 1024,
                "width": 64,
                "num_images_per_prompt": 8,
                "scheduler": "euler_a",
                "lora_scale": 2,
            },
        }
    )
    assert request.parameters == schema.DiffusionParameters(
        negative_prompt="blurry",
        guidance_scale=0.0,
        num_inference_steps=150,
        seed=2**32 - 1,
        height=1024,
        width=64,
        num_images_per_prompt=8,
        scheduler="euler_a",
        lora_scale=2.0,
    )
    assert isinstance(request.parameters.guidance_scale, float)
    assert isinstance(request.parameters.lora_scale, float)


def test_null_means_the_default() -> None:
    params = {name: None for name in schema.PARAMETER_KEYS}
    assert schema.parse_diffusion_request({"inputs": "x", "parameters": params}).parameters == (
        schema.DiffusionParameters()
    )
    assert schema.parse_diffusion_request({"inputs": "x", "parameters": None}).parameters == (
        schema.DiffusionParameters()
    )


def test_the_six_schedulers_are_offered() -> None:
    assert schedulers.SCHEDULER_NAMES == ("pndm", "ddim", "euler", "euler_a", "dpmpp_2m", "lms")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ([], "JSON object"),
        ("a fox", "JSON object"),
        ({}, '"inputs"'),
        ({"inputs": ""}, '"inputs" is an empty prompt'),
        ({"inputs": " \n\t "}, '"inputs" is an empty prompt'),
        ({"inputs": None}, '"inputs" must be a string'),
        ({"inputs": 7}, '"inputs" must be a string'),
        ({"inputs": ["a", "b"]}, "num_images_per_prompt"),
        ({"inputs": "x", "prompt": "y"}, "'prompt'"),
        ({"inputs": "x", "parameters": []}, '"parameters" must be an object'),
        ({"inputs": "x", "parameters": {"steps": 3}}, "'steps'"),
        ({"inputs": "x", "parameters": {"guidance": 3, "seed": 1}}, "'guidance'"),
    ],
)
def test_malformed_requests_name_the_field(body: Any, named: str) -> None:
    assert named in _error(body).message


def test_unknown_fields_list_the_allowed_ones() -> None:
    message = _error({"inputs": "x", "parameters": {"sampler": "euler"}}).message
    assert "'sampler'" in message and "allowed fields are" in message
    assert all(name in message for name in schema.PARAMETER_KEYS)


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("guidance_scale", -0.5, "from 0 to 30"),
        ("guidance_scale", 30.01, "from 0 to 30"),
        ("guidance_scale", "7.5", "from 0 to 30"),
        ("guidance_scale", True, "from 0 to 30"),
        ("guidance_scale", float("nan"), "from 0 to 30"),
        ("guidance_scale", float("inf"), "from 0 to 30"),
        ("num_inference_steps", 0, "from 1 to 150"),
        ("num_inference_steps", 151, "from 1 to 150"),
        ("num_inference_steps", 2.5, "from 1 to 150"),
        ("num_inference_steps", True, "from 1 to 150"),
        ("num_inference_steps", "3", "from 1 to 150"),
        ("seed", -1, "from 0 to 4294967295"),
        ("seed", 2**32, "from 0 to 4294967295"),
        ("seed", 1.5, "from 0 to 4294967295"),
        ("seed", False, "from 0 to 4294967295"),
        ("height", 56, "multiple of 8 from 64 to 1024"),
        ("height", 1032, "multiple of 8 from 64 to 1024"),
        ("height", 100, "multiple of 8 from 64 to 1024"),
        ("height", 64.5, "multiple of 8 from 64 to 1024"),
        ("width", 65, "multiple of 8 from 64 to 1024"),
        ("width", True, "multiple of 8 from 64 to 1024"),
        ("num_images_per_prompt", 0, "from 1 to 8"),
        ("num_images_per_prompt", 9, "from 1 to 8"),
        ("num_images_per_prompt", True, "from 1 to 8"),
        ("scheduler", "k_euler", "pndm, ddim, euler, euler_a, dpmpp_2m, lms"),
        ("scheduler", 3, "pndm, ddim, euler, euler_a, dpmpp_2m, lms"),
        ("scheduler", "EULER", "pndm, ddim, euler, euler_a, dpmpp_2m, lms"),
        ("lora_scale", -0.1, "from 0 to 2"),
        ("lora_scale", 2.5, "from 0 to 2"),
        ("lora_scale", "1", "from 0 to 2"),
        ("negative_prompt", 5, "must be a string"),
        ("negative_prompt", ["a"], "must be a string"),
    ],
)
def test_out_of_range_or_wrong_type_is_400_naming_the_field_and_the_range(name: str, value: Any, allowed: str) -> None:
    message = _error({"inputs": "x", "parameters": {name: value}}).message
    assert f'"parameters.{name}"' in message, message
    assert allowed in message, message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("guidance_scale", 0),
        ("guidance_scale", 30),
        ("num_inference_steps", 1),
        ("num_inference_steps", 150),
        ("seed", 0),
        ("height", 64),
        ("width", 1024),
        ("num_images_per_prompt", 1),
        ("lora_scale", 0),
        ("negative_prompt", ""),
    ],
)
def test_range_ends_are_included(name: str, value: Any) -> None:
    parsed = schema.parse_diffusion_request({"inputs": "x", "parameters": {name: value}}).parameters
    assert getattr(parsed, name) == value
