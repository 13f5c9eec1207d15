"""The shape of a text-to-image request, checked strictly before any model work.

A typo such as ``"steps"`` or ``"guidance"`` silently ignored would generate a plausible image with the
defaults, so unknown keys are errors, and so are wrong types (``true`` is not an integer here, as it is
in Python). Ranges are inclusive, and every error names the field and the allowed values. Checks that
need the model (the default size, whether a LoRA is loaded, the pixel budget) happen in
diffusion_service, where the model is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffusion_schedulers import SCHEDULER_NAMES
from request_checks import as_int, check_keys, check_text, is_number, type_name
from serving_errors import InvalidInput

REQUEST_KEYS = ("inputs", "parameters", "stream")
PARAMETER_KEYS = (
    "negative_prompt",
    "guidance_scale",
    "num_inference_steps",
    "seed",
    "height",
    "width",
    "num_images_per_prompt",
    "scheduler",
    "lora_scale",
)
EXAMPLE = '{"inputs": "a lighthouse at dusk", "parameters": {"num_inference_steps": 30, "seed": 42}}'

DEFAULT_GUIDANCE_SCALE = 7.5
DEFAULT_STEPS = 30
DEFAULT_IMAGES = 1
DEFAULT_LORA_SCALE = 1.0
GUIDANCE_RANGE = (0.0, 30.0)
STEPS_RANGE = (1, 150)
SEED_RANGE = (0, 2**32 - 1)
SIZE_RANGE = (64, 1024)
SIZE_MULTIPLE = 8
IMAGES_RANGE = (1, 8)
LORA_SCALE_RANGE = (0.0, 2.0)


@dataclass(frozen=True)
class DiffusionParameters:
    """What the caller sent; ``None`` means "the default", resolved where the model is known."""

    negative_prompt: str | None = None
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE
    num_inference_steps: int = DEFAULT_STEPS
    seed: int | None = None
    height: int | None = None
    width: int | None = None
    num_images_per_prompt: int = DEFAULT_IMAGES
    scheduler: str | None = None
    lora_scale: float | None = None


@dataclass(frozen=True)
class DiffusionRequest:
    prompt: str
    parameters: DiffusionParameters
    stream: bool = False  # progress lines, then the result (diffusion_progress)










def _int_in_range(params: dict[str, Any], name: str, bounds: tuple[int, int], example: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    low, high = bounds
    whole = as_int(value)
    if whole is None or not low <= whole <= high:
        raise InvalidInput(
            f'"parameters.{name}" must be an integer from {low} to {high}, got {value!r} ({type_name(value)}): '
            f"send e.g. {example}, or omit it."
        )
    return whole


def _number_in_range(params: dict[str, Any], name: str, bounds: tuple[float, float], example: float) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    low, high = bounds
    if not is_number(value) or not low <= value <= high:
        raise InvalidInput(
            f'"parameters.{name}" must be a number from {low:g} to {high:g}, got {value!r} ({type_name(value)}): '
            f"send e.g. {example}, or omit it."
        )
    return float(value)


def _size(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    low, high = SIZE_RANGE
    whole = as_int(value)
    if whole is None or not low <= whole <= high or whole % SIZE_MULTIPLE:
        raise InvalidInput(
            f'"parameters.{name}" must be a multiple of {SIZE_MULTIPLE} from {low} to {high}, got {value!r}: '
            "send e.g. 512, or omit it for the model's native size."
        )
    return whole


def _prompt(body: dict[str, Any]) -> str:
    if "inputs" not in body:
        raise InvalidInput(f'the request needs "inputs", the prompt: send e.g. {EXAMPLE}.')
    value = body["inputs"]
    if isinstance(value, list):
        raise InvalidInput(
            '"inputs" must be one prompt (a string), got a list: send one prompt per request and use '
            '"parameters.num_images_per_prompt" for several images.'
        )
    if not isinstance(value, str):
        raise InvalidInput(f'"inputs" must be a string, got {type_name(value)}: send the prompt as text.')
    if not value.strip():
        raise InvalidInput('"inputs" is an empty prompt: send a non-empty description of the image.')
    return check_text(value, "inputs")


def parse_parameters(value: Any) -> DiffusionParameters:
    """Check the optional ``parameters`` object; ``null`` for any of them means its default."""
    if value is None:
        return DiffusionParameters()
    if not isinstance(value, dict):
        raise InvalidInput(
            f'"parameters" must be an object, got {type_name(value)}: send e.g. {{"seed": 42}} or omit it.'
        )
    check_keys(value, PARAMETER_KEYS, '"parameters"')
    negative_prompt = value.get("negative_prompt")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise InvalidInput(
            f'"parameters.negative_prompt" must be a string, got {type_name(negative_prompt)}: '
            'send text such as "blurry, low quality", or omit it.'
        )
    if negative_prompt is not None:
        check_text(negative_prompt, "parameters.negative_prompt")
    scheduler = value.get("scheduler")
    if scheduler is not None and scheduler not in SCHEDULER_NAMES:
        raise InvalidInput(
            f'"parameters.scheduler" {scheduler!r} is not supported: use one of {", ".join(SCHEDULER_NAMES)}, '
            "or omit it for the model's own scheduler."
        )
    guidance = _number_in_range(value, "guidance_scale", GUIDANCE_RANGE, DEFAULT_GUIDANCE_SCALE)
    steps = _int_in_range(value, "num_inference_steps", STEPS_RANGE, DEFAULT_STEPS)
    images = _int_in_range(value, "num_images_per_prompt", IMAGES_RANGE, 2)
    return DiffusionParameters(
        negative_prompt=negative_prompt,
        guidance_scale=DEFAULT_GUIDANCE_SCALE if guidance is None else guidance,
        num_inference_steps=DEFAULT_STEPS if steps is None else steps,
        seed=_int_in_range(value, "seed", SEED_RANGE, 42),
        height=_size(value, "height"),
        width=_size(value, "width"),
        num_images_per_prompt=DEFAULT_IMAGES if images is None else images,
        scheduler=scheduler,
        lora_scale=_number_in_range(value, "lora_scale", LORA_SCALE_RANGE, DEFAULT_LORA_SCALE),
    )


def parse_diffusion_request(body: Any) -> DiffusionRequest:
    """``{"inputs": prompt, "parameters": {...}}``, every field checked."""
    if not isinstance(body, dict):
        raise InvalidInput(f"the request body must be a JSON object, got {type_name(body)}: send e.g. {EXAMPLE}.")
    check_keys(body, REQUEST_KEYS, "a text-to-image request")
    prompt = _prompt(body)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidInput(f'"stream" must be true or false, got {stream!r} ({type_name(stream)}): send true '
                           "for one progress line per denoising step (with InvokeEndpointWithResponseStream), "
                           "or omit it.")
    return DiffusionRequest(prompt=prompt, parameters=parse_parameters(body.get("parameters")), stream=stream)
