"""The values the OpenAPI document restates equal the built-in handlers' own, so neither drifts alone."""

from __future__ import annotations

import pytest

from localmaker.local_endpoint import builtin_request_rules as rules
from tests.inference.handler_loader import sibling

RESTATED = [
    ("media_codecs", "JSON", "JSON"),
    ("media_codecs", "NPY", "NPY"),
    ("media_codecs", "PNG", "PNG"),
    ("media_codecs", "JPEG", "JPEG"),
    ("media_codecs", "REQUEST_TYPES", "REQUEST_TYPES"),
    ("request_schema", "DEFAULT_TOP_K", "DEFAULT_TOP_K"),
    ("request_schema", "MAX_TEXTS", "MAX_TEXTS"),
    ("diffusion_request", "DEFAULT_GUIDANCE_SCALE", "DEFAULT_GUIDANCE_SCALE"),
    ("diffusion_request", "DEFAULT_STEPS", "DEFAULT_STEPS"),
    ("diffusion_request", "DEFAULT_IMAGES", "DEFAULT_IMAGES"),
    ("diffusion_request", "DEFAULT_LORA_SCALE", "DEFAULT_LORA_SCALE"),
    ("diffusion_request", "GUIDANCE_RANGE", "GUIDANCE_RANGE"),
    ("diffusion_request", "STEPS_RANGE", "STEPS_RANGE"),
    ("diffusion_request", "SEED_RANGE", "SEED_RANGE"),
    ("diffusion_request", "SIZE_RANGE", "SIZE_RANGE"),
    ("diffusion_request", "SIZE_MULTIPLE", "SIZE_MULTIPLE"),
    ("diffusion_request", "IMAGES_RANGE", "IMAGES_RANGE"),
    ("diffusion_request", "LORA_SCALE_RANGE", "LORA_SCALE_RANGE"),
    ("diffusion_schedulers", "SCHEDULER_NAMES", "SCHEDULER_NAMES"),
    ("diffusion_progress", "JSON_LINES", "JSON_LINES"),
]


@pytest.mark.parametrize(("module", "name", "restated"), RESTATED)
def test_restated_value_equals_the_inference_module(module, name, restated):
    assert getattr(rules, restated) == getattr(sibling(module), name)


def test_every_restated_value_is_checked():
    public = {name for name in vars(rules) if name.isupper()}
    assert public == {restated for _, _, restated in RESTATED}
