"""Text-to-image requests answered by one loaded Stable Diffusion pipeline.

This is the object model_fn returns for a diffusers pipeline, so predict_fn can dispatch on its type.
Checks that need the model (the native size, whether a LoRA is loaded, the pixel budget) live here; the
request's shape was already checked by diffusion_request.

Determinism: image ``i`` is drawn from its own CPU generator seeded ``seed + i`` (wrapping past
2**32 - 1), so the same request with the same seed gives the same pixels on the same device, whatever
the GPU's RNG state, and each reported seed is a valid one to resend alone.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import image_codecs
import torch
from diffusion_memory import check_pixel_budget, run_out_of_memory_as_503
from diffusion_pipeline import DiffusionModel
from diffusion_prompts import truncation_warning
from diffusion_request import DEFAULT_LORA_SCALE, SEED_RANGE, DiffusionParameters, DiffusionRequest
from diffusion_schedulers import fresh_scheduler, scheduler_name
from diffusion_timing import DenoisingTimer
from handler_settings import HandlerSettings
from serving_errors import InvalidInput

logger = logging.getLogger(__name__)

_SEED_SPACE = SEED_RANGE[1] + 1
WARM_UP_STEPS = 2


@dataclass(frozen=True)
class DiffusionResult:
    """Images in order, with the seeds and effective parameters that reproduce them."""

    images: list[Any]
    seeds: list[int]
    parameters: dict[str, Any]
    total_s: float
    per_step_ms: float
    warnings: list[str]
    nsfw_content_detected: list[bool] | None = None

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "images": [image_codecs.png_base64(image) for image in self.images],
            "seeds": self.seeds,
            "parameters": self.parameters,
            "timings": {"total_s": self.total_s, "per_step_ms": self.per_step_ms},
            "warnings": self.warnings,
        }
        if self.nsfw_content_detected is not None:
            payload["nsfw_content_detected"] = self.nsfw_content_detected
        return payload


class DiffusionService:
    """A Stable Diffusion pipeline plus the per-request rules: defaults, budget, seeds, scheduler."""

    def __init__(self, model: DiffusionModel, max_pixels: int) -> None:
        self.model = model
        self.max_pixels = max_pixels
        self.base_scheduler = model.pipe.scheduler

    @classmethod
    def load(cls, model_dir: Path, settings: HandlerSettings) -> DiffusionService:
        service = cls(DiffusionModel.load(model_dir, settings), settings.max_pixels)
        if service.model.compiled:
            service.warm_up()
        return service

    def warm_up(self) -> None:
        """One short generation at the default size, so the first request does not pay for compilation."""
        started = time.perf_counter()
        self.handle(DiffusionRequest("warm-up", DiffusionParameters(num_inference_steps=WARM_UP_STEPS, seed=0)))
        logger.info("warm-up generation took %.1f s", time.perf_counter() - started)

    def _lora_scale(self, requested: float | None) -> float | None:
        if not self.model.lora_loaded:
            if requested is not None:
                raise InvalidInput(
                    '"parameters.lora_scale" was sent but this model has no LoRA adapter '
                    "(no pytorch_lora_weights.safetensors next to model_index.json): remove it, or deploy "
                    "the model with its LoRA weights."
                )
            return None
        return DEFAULT_LORA_SCALE if requested is None else requested

    def _warnings(self, prompt: str, negative_prompt: str | None) -> list[str]:
        tokenizer = self.model.pipe.tokenizer
        found = [truncation_warning(tokenizer, prompt, "prompt")]
        if negative_prompt:
            found.append(truncation_warning(tokenizer, negative_prompt, "negative_prompt"))
        return [warning for warning in found if warning is not None]

    def handle(self, request: DiffusionRequest) -> DiffusionResult:
        params = request.parameters
        height = params.height or self.model.native_size
        width = params.width or self.model.native_size
        images = params.num_images_per_prompt
        steps = params.num_inference_steps
        check_pixel_budget(images, height, width, self.max_pixels)
        lora_scale = self._lora_scale(params.lora_scale)
        scheduler = fresh_scheduler(self.base_scheduler, params.scheduler)
        seed = secrets.randbelow(_SEED_SPACE) if params.seed is None else params.seed
        seeds = [(seed + i) % _SEED_SPACE for i in range(images)]
        warnings = self._warnings(request.prompt, params.negative_prompt)
        for warning in warnings:
            logger.warning("%s", warning)

        pipe = self.model.with_scheduler(scheduler)
        timer = DenoisingTimer(self.model.device)

        def generate() -> Any:
            return pipe(
                prompt=request.prompt,
                negative_prompt=params.negative_prompt,
                height=height,
                width=width,
                num_inference_steps=steps,
                guidance_scale=params.guidance_scale,
                num_images_per_prompt=images,
                generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                cross_attention_kwargs=None if lora_scale is None else {"scale": lora_scale},
                callback_on_step_end=timer.on_step_end,
                output_type="pil",
            )

        started = time.perf_counter()
        timer.attach(self.model.pipe.unet)
        try:
            output = run_out_of_memory_as_503(generate, f"{images} image(s) of {width}x{height} with {steps} steps")
            if self.model.device.type == "cuda":
                torch.cuda.synchronize(self.model.device)  # once, after the loop: the timings are now final
        finally:
            timer.detach()
        total_s = time.perf_counter() - started

        nsfw = output.nsfw_content_detected
        return DiffusionResult(
            images=list(output.images),
            seeds=seeds,
            parameters={
                "negative_prompt": params.negative_prompt,
                "guidance_scale": params.guidance_scale,
                "num_inference_steps": steps,
                "seed": seed,
                "height": height,
                "width": width,
                "num_images_per_prompt": images,
                "scheduler": scheduler_name(scheduler),
                "lora_scale": lora_scale,
            },
            total_s=total_s,
            per_step_ms=timer.elapsed_ms() / steps,
            warnings=warnings,
            nsfw_content_detected=None if nsfw is None else [bool(flag) for flag in nsfw],
        )
