"""Text-to-image requests answered by one loaded Stable Diffusion pipeline.

This is the object model_fn returns for a diffusers pipeline, so predict_fn can dispatch on its type.
Checks that need the model (the native size, whether a LoRA is loaded, the pixel budget) live here; the
request's shape was already checked by diffusion_request.

Determinism: image ``i`` is drawn from its own CPU generator seeded ``seed + i`` (wrapping past
2**32 - 1), whatever the GPU's RNG state, so each reported seed is a valid one to resend alone. A request
generated alone gets the same pixels for the same seed on the same device, and by default the CPU
generates every request alone. On CUDA, requests that arrive together may share one pipeline call (see
``run``), and that call's batch size, which depends on concurrent traffic, changes how kernels round: the
same seed then gives the same image within rounding (a few pixels a level apart), not always the same bytes.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import image_codecs
import torch
from diffusion_memory import check_pixel_budget, run_out_of_memory_as_503
from diffusion_pipeline import DiffusionModel
from diffusion_progress import StepCallback, progress_lines
from diffusion_prompts import quiet_diffusers_truncation_log, truncation_warning
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


@dataclass(frozen=True)
class GenerationPlan:
    """One request, checked and resolved: what to generate and with which seeds."""

    prompt: str
    negative_prompt: str | None
    height: int
    width: int
    steps: int
    guidance_scale: float
    seed: int
    seeds: list[int]
    scheduler: str
    requested_scheduler: str | None
    lora_scale: float | None
    stream: bool = False  # answered as progress lines, then the result (diffusion_progress)

    @property
    def shape_key(self) -> tuple[Any, ...]:
        """Plans with equal keys can share one pipeline call: the loop and its scalars are the same.

        The scheduler is keyed by what the request asked for, not by the name it resolves to: the model's
        own scheduler (None) and a named one can share a class but not a config (the model's DPM-Solver may
        be the SDE variant, "dpmpp_2m" never is), and the group runs with its first plan's choice.
        """
        return (self.height, self.width, self.steps, self.requested_scheduler, self.guidance_scale, self.lora_scale)

    def parameters(self) -> dict[str, Any]:
        return {
            "negative_prompt": self.negative_prompt,
            "guidance_scale": self.guidance_scale,
            "num_inference_steps": self.steps,
            "seed": self.seed,
            "height": self.height,
            "width": self.width,
            "num_images_per_prompt": len(self.seeds),
            "scheduler": self.scheduler,
            "lora_scale": self.lora_scale,
        }


class DiffusionService:
    """A Stable Diffusion pipeline plus the per-request rules: defaults, budget, seeds, scheduler."""

    def __init__(self, model: DiffusionModel, max_pixels: int, joint_batches: bool | None = None) -> None:
        self.model = model
        self.max_pixels = max_pixels
        self.base_scheduler = model.pipe.scheduler
        self.joint_batches = model.device.type == "cuda" if joint_batches is None else joint_batches
        quiet_diffusers_truncation_log()

    @classmethod
    def load(cls, model_dir: Path, settings: HandlerSettings) -> DiffusionService:
        service = cls(DiffusionModel.load(model_dir, settings), settings.max_pixels, settings.joint_diffusion_batches)
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

    def _warnings(self, plan: GenerationPlan) -> list[str]:
        tokenizer = self.model.pipe.tokenizer
        found = [truncation_warning(tokenizer, plan.prompt, "prompt")]
        if plan.negative_prompt:
            if plan.guidance_scale <= 1:
                # diffusers encodes the negative prompt only for classifier-free guidance, which is off at
                # guidance_scale <= 1, yet "parameters" echoes it: say it did nothing rather than fail a
                # request that used to succeed.
                found.append(
                    f'"parameters.negative_prompt" had no effect: it is used only for classifier-free guidance, '
                    f"which is off at guidance_scale {plan.guidance_scale:g} (<= 1). Raise "
                    '"parameters.guidance_scale" above 1 (e.g. 7.5) to use it, or omit negative_prompt.'
                )
            else:
                found.append(truncation_warning(tokenizer, plan.negative_prompt, "negative_prompt"))
        return [warning for warning in found if warning is not None]

    def handle(self, request: DiffusionRequest) -> DiffusionResult | Iterator[bytes]:
        """The result; for a ``"stream": true`` request, the progress lines that end with it."""
        result = self.run([self.prepare(request)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def stream(self, plan: GenerationPlan) -> Iterator[bytes]:
        """``plan`` generated alone, as lines of progress then its result; nothing runs until it is read."""
        return progress_lines(lambda on_step: self._generate([plan], on_step)[0])

    def prepare(self, request: DiffusionRequest) -> GenerationPlan:
        """Resolve defaults, seeds and the scheduler, and check the budget: everything but generating."""
        params = request.parameters
        height = params.height or self.model.native_size
        width = params.width or self.model.native_size
        images = params.num_images_per_prompt
        check_pixel_budget(images, height, width, self.max_pixels)
        scheduler = fresh_scheduler(self.base_scheduler, params.scheduler)  # refuses an unknown name here
        seed = secrets.randbelow(_SEED_SPACE) if params.seed is None else params.seed
        return GenerationPlan(
            prompt=request.prompt,
            negative_prompt=params.negative_prompt,
            height=height,
            width=width,
            steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            seed=seed,
            seeds=[(seed + i) % _SEED_SPACE for i in range(images)],
            scheduler=scheduler_name(scheduler),
            requested_scheduler=params.scheduler,
            lora_scale=self._lora_scale(params.lora_scale),
            stream=request.stream,
        )

    def run(self, plans: list[GenerationPlan]) -> list[DiffusionResult | BaseException | Iterator[bytes]]:
        """Generate each plan's images; plans of one shape share a pipeline call when batches are joint.
        A streamed plan is answered with its (unstarted) stream, which its reader runs alone.

        On the CPU a joint call brings no speed (the convolutions already use every core) and batch
        kernels round the last bit of a few pixels differently, so there each plan runs alone and a
        batched request gets exactly the pixels it would get alone.
        """
        results: list[DiffusionResult | BaseException | Iterator[bytes]] = [RuntimeError("not generated")] * len(plans)
        for index, plan in enumerate(plans):
            if plan.stream:
                results[index] = self.stream(plan)
        for indices in self._groups(plans):
            group = [plans[i] for i in indices]
            generated: list[DiffusionResult | BaseException]
            try:
                generated = list(self._generate(group))
            except Exception as exc:  # noqa: BLE001 - each request of the group gets the failure as its answer
                generated = [exc] * len(group)
            for index, result in zip(indices, generated, strict=True):
                results[index] = result
        return results

    def _groups(self, plans: list[GenerationPlan]) -> list[list[int]]:
        if not self.joint_batches:
            return [[i] for i, plan in enumerate(plans) if not plan.stream]
        groups: dict[tuple[Any, ...], list[list[int]]] = {}
        for index, plan in enumerate(plans):
            if plan.stream:
                continue  # streamed alone, by its reader
            chunks = groups.setdefault(plan.shape_key, [[]])
            pixels = sum(len(plans[i].seeds) for i in chunks[-1]) * plan.height * plan.width
            if chunks[-1] and pixels + len(plan.seeds) * plan.height * plan.width > self.max_pixels:
                chunks.append([])  # one call must stay within the budget a single request has
            chunks[-1].append(index)
        return [chunk for chunks in groups.values() for chunk in chunks]

    def _generate(self, group: list[GenerationPlan], on_step: StepCallback | None = None) -> list[DiffusionResult]:
        """One pipeline call for plans that share a shape: each image with its own prompt and seed.
        ``on_step`` hears of each denoising step as it ends."""
        first = group[0]
        seeds = [seed for plan in group for seed in plan.seeds]
        if len(group) == 1:  # the prompt is encoded once and repeated, as a lone request always was
            prompts: dict[str, Any] = {"prompt": first.prompt, "negative_prompt": first.negative_prompt,
                                       "num_images_per_prompt": len(seeds)}
        else:
            negatives = [plan.negative_prompt or "" for plan in group for _ in plan.seeds]
            prompts = {"prompt": [plan.prompt for plan in group for _ in plan.seeds],
                       "negative_prompt": negatives if any(negatives) else None, "num_images_per_prompt": 1}
        # Read here, on the model thread: the pipeline's fast tokenizer must not be used by two threads.
        warnings = [self._warnings(plan) for plan in group]
        for warning in (w for found in warnings for w in found):
            logger.warning("%s", warning)
        pipe = self.model.with_scheduler(fresh_scheduler(self.base_scheduler, first.requested_scheduler))
        timer = DenoisingTimer(self.model.device)

        def step_ended(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
            timer.on_step_end(pipe, step, timestep, callback_kwargs)
            if on_step is not None:
                on_step(step + 1, int(getattr(pipe, "num_timesteps", first.steps)))
            return callback_kwargs

        def generate() -> Any:
            return pipe(
                **prompts,
                height=first.height,
                width=first.width,
                num_inference_steps=first.steps,
                guidance_scale=first.guidance_scale,
                generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                cross_attention_kwargs=None if first.lora_scale is None else {"scale": first.lora_scale},
                callback_on_step_end=step_ended,
                output_type="pil",
            )

        started = time.perf_counter()
        timer.attach(self.model.pipe.unet)
        try:
            with _lora_scaling_restored(self.model.pipe.text_encoder):
                output = run_out_of_memory_as_503(
                    generate, f"{len(seeds)} image(s) of {first.width}x{first.height} with {first.steps} steps")
            if self.model.device.type == "cuda":
                torch.cuda.synchronize(self.model.device)  # once, after the loop: the timings are now final
        finally:
            timer.detach()
        total_s = time.perf_counter() - started
        per_step_ms = timer.elapsed_ms() / first.steps
        if len(group) > 1:
            logger.info("generated %d requests (%d images) in one pipeline call", len(group), len(seeds))

        results, start = [], 0
        nsfw = output.nsfw_content_detected
        for plan, plan_warnings in zip(group, warnings, strict=True):
            end = start + len(plan.seeds)
            results.append(DiffusionResult(
                images=list(output.images[start:end]),
                seeds=plan.seeds,
                parameters=plan.parameters(),
                total_s=total_s,
                per_step_ms=per_step_ms,
                warnings=plan_warnings,
                nsfw_content_detected=None if nsfw is None else [bool(flag) for flag in nsfw[start:end]],
            ))
            start = end
        return results


@contextmanager
def _lora_scaling_restored(module: Any) -> Iterator[None]:
    """Put back the LoRA scaling of ``module``'s layers however the call inside ends.

    diffusers' encode_prompt multiplies the text encoder's LoRA scaling by the request's lora_scale and
    divides it back only when it returns, with no try/finally (the UNet's forward has one): a failure in
    between, such as running out of memory, would leave every later request scaled by this one's scale.
    The saved values are restored rather than divided back, so it is right wherever the failure fell.
    """
    saved = [(layer.scaling, dict(layer.scaling)) for layer in (module.modules() if module is not None else ())
             if isinstance(getattr(layer, "scaling", None), dict)]
    try:
        yield
    finally:
        for scaling, values in saved:
            scaling.clear()
            scaling.update(values)
