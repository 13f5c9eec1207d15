"""What a text-to-image response looks like: JSON by default, one raw PNG or JPEG when asked."""

from __future__ import annotations

import base64
import io
import json
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from tests.inference.handler_loader import sibling, text_to_image

errors = sibling("serving_errors")
media_codecs = sibling("media_codecs")

PARAMETER_TYPES = {
    "negative_prompt": (str, type(None)),
    "guidance_scale": (float,),
    "num_inference_steps": (int,),
    "seed": (int,),
    "height": (int,),
    "width": (int,),
    "num_images_per_prompt": (int,),
    "scheduler": (str,),
    "lora_scale": (float, type(None)),
}


def _fast() -> dict[str, Any]:
    return {"num_inference_steps": 1, "seed": 0}


def test_the_json_response_schema(handler: ModuleType, sd_service: Any) -> None:
    raw, kind = text_to_image(handler, sd_service, seed=3, num_images_per_prompt=2, negative_prompt="fog")
    assert kind == "application/json"
    body = json.loads(raw)
    assert set(body) == {"images", "seeds", "parameters", "timings", "warnings"}  # no safety checker here
    assert len(body["images"]) == 2 and all(isinstance(data, str) for data in body["images"])
    for data in body["images"]:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64))
    assert body["seeds"] == [3, 4]
    params = body["parameters"]
    assert set(params) == set(PARAMETER_TYPES)
    for name, types in PARAMETER_TYPES.items():
        assert isinstance(params[name], types) and not isinstance(params[name], bool), name
    assert params == {
        "negative_prompt": "fog",
        "guidance_scale": 7.5,
        "num_inference_steps": 2,
        "seed": 3,
        "height": 64,
        "width": 64,
        "num_images_per_prompt": 2,
        "scheduler": "pndm",
        "lora_scale": None,  # this model has no LoRA
    }
    assert set(body["timings"]) == {"total_s", "per_step_ms"}
    assert all(isinstance(value, float) and value > 0 for value in body["timings"].values())
    # The denoising loop is part of the total: steps x per-step time cannot exceed it.
    assert body["timings"]["per_step_ms"] * 2 / 1000 <= body["timings"]["total_s"]
    assert body["warnings"] == []


@pytest.mark.parametrize("accept", [None, "", "*/*", "application/json", "application/*", "text/html, */*"])
def test_json_is_the_default(handler: ModuleType, sd_service: Any, accept: str | None) -> None:
    raw, kind = handler.output_fn(handler.predict_fn({"inputs": "a cat", "parameters": _fast()}, sd_service), accept)
    assert kind == "application/json" and set(json.loads(raw)) >= {"images", "seeds"}


@pytest.mark.parametrize(
    ("accept", "kind", "fmt"),
    [
        ("image/png", "image/png", "PNG"),
        ("image/*", "image/png", "PNG"),
        ("Image/PNG; q=0.9", "image/png", "PNG"),
        ("image/jpeg", "image/jpeg", "JPEG"),
        ("text/plain, image/jpeg", "image/jpeg", "JPEG"),
    ],
)
def test_one_image_as_raw_bytes(handler: ModuleType, sd_service: Any, accept: str, kind: str, fmt: str) -> None:
    raw, got = text_to_image(handler, sd_service, accept=accept, seed=8, height=72, width=64)
    assert got == kind
    image = Image.open(io.BytesIO(raw))
    image.load()
    assert (image.format, image.mode, image.size) == (fmt, "RGB", (64, 72))


def test_the_raw_png_is_the_json_image(handler: ModuleType, sd_service: Any) -> None:
    png, _ = text_to_image(handler, sd_service, accept="image/png", seed=8)
    body = json.loads(text_to_image(handler, sd_service, seed=8)[0])
    assert base64.b64decode(body["images"][0]) == png


def test_several_images_with_an_image_accept_is_406(handler: ModuleType, sd_service: Any) -> None:
    with pytest.raises(errors.UnsupportedAccept) as info:
        text_to_image(handler, sd_service, accept="image/png", num_images_per_prompt=2, num_inference_steps=1)
    assert info.value.status_code == 406
    assert "asks for 2" in info.value.message and "application/json" in info.value.message


def test_several_images_go_to_json_when_the_caller_also_accepts_it(handler: ModuleType, sd_service: Any) -> None:
    raw, kind = text_to_image(
        handler, sd_service, accept="image/png, application/json", num_images_per_prompt=2, num_inference_steps=1
    )
    assert kind == "application/json" and len(json.loads(raw)["images"]) == 2


@pytest.mark.parametrize("accept", ["application/x-npy", "text/csv", "image/webp", "audio/*"])
def test_other_accepts_are_406_naming_the_supported_types(handler: ModuleType, sd_service: Any, accept: str) -> None:
    with pytest.raises(errors.UnsupportedAccept) as info:
        text_to_image(handler, sd_service, accept=accept, num_inference_steps=1)
    assert info.value.status_code == 406
    for supported in ("application/json", "image/png", "image/jpeg"):
        assert supported in info.value.message


def test_image_ranges_pick_the_first_offered_type_of_that_kind() -> None:
    offered = ("application/json", "image/png", "image/jpeg")
    assert media_codecs.negotiate("image/*", offered) == "image/png"
    assert media_codecs.negotiate("application/*", offered) == "application/json"
    assert media_codecs.negotiate("*/*", ("image/png",)) == "image/png"
    with pytest.raises(errors.UnsupportedAccept):
        media_codecs.negotiate("image/*", ("application/json", "application/x-npy"))
