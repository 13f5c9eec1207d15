"""The training loop: noise-prediction MSE on VAE latents, AdamW on the LoRA weights only, and a
fixed-noise evaluation loss before and after.

The recipe is diffusers' text-to-image LoRA one, with frozen VAE, text encoder and UNet. Every random
draw comes from CPU generators seeded with ``seed``, so a run is repeatable on any device.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from hyperparameters import Hyperparameters
from lora_adapter import add_lora
from progress_lines import report_progress
from training_data import Example, batches, load_pixels

logger = logging.getLogger(__name__)

EVAL_TIMESTEPS = 8
EVAL_SEED = 1234


@dataclass
class TrainingResult:
    losses: list[float]
    seconds: float
    device: str
    mixed_precision: str
    eval_loss_before: float
    eval_loss_after: float


def denoising_target(scheduler: Any, latents: torch.Tensor, noise: torch.Tensor,
                     timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet learns to predict, by the base model's ``prediction_type``: the noise (SD1.5) or the
    velocity (SD2.x, tiny-sd)."""
    if check_prediction_type(scheduler) == "epsilon":
        return noise
    return scheduler.get_velocity(latents, noise, timesteps)


def check_prediction_type(scheduler: Any) -> str:
    """The base model's ``prediction_type``, refused by name unless ``denoising_target`` knows it."""
    prediction_type: str = scheduler.config.prediction_type
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"unsupported prediction_type {prediction_type!r}: expected epsilon or v_prediction")
    return prediction_type


def evaluation_loss(examples: list[Example], components: dict[str, Any], input_ids: torch.Tensor, resolution: int,
                    device: torch.device, weight_dtype: torch.dtype, batch_size: int) -> float:
    """The denoising loss on every training image at fixed timesteps and fixed noise.

    Each training step draws its own timesteps and noise, so its loss swings more than training moves
    it. This one number is computed the same way before and after training: if it falls, the adapter
    really fits the training set better.

    The images go through the VAE and UNet ``batch_size`` at a time, the batch training itself uses,
    so a set that trains within memory is also evaluated within it. Only the small latents and text
    states are kept for the whole set, and the noise is drawn for the whole set at once, so the result
    does not depend on ``batch_size``.
    """
    text_encoder, vae, unet, scheduler = (components[k] for k in ("text_encoder", "vae", "unet", "noise_scheduler"))
    generator = torch.Generator().manual_seed(EVAL_SEED)
    chunks = [slice(start, start + batch_size) for start in range(0, len(examples), batch_size)]
    was_training = unet.training
    unet.eval()
    with torch.no_grad():
        latent_parts, hidden_parts = [], []
        for chunk in chunks:
            pixels = torch.stack([load_pixels(e.image, resolution, True, False, generator) for e in examples[chunk]])
            encoded = vae.encode(pixels.to(device, dtype=weight_dtype)).latent_dist.mean
            latent_parts.append(encoded * vae.config.scaling_factor)
            hidden_parts.append(text_encoder(input_ids[chunk].to(device), return_dict=False)[0])
        latents, hidden = torch.cat(latent_parts), torch.cat(hidden_parts)
        steps = torch.linspace(0, scheduler.config.num_train_timesteps - 1, EVAL_TIMESTEPS + 2)[1:-1].long()
        total = 0.0
        for step in steps:
            noise = torch.randn(latents.shape, generator=generator).to(device, dtype=latents.dtype)
            timesteps = torch.full((len(examples),), int(step), device=device, dtype=torch.long)
            noisy = scheduler.add_noise(latents, noise, timesteps)
            target = denoising_target(scheduler, latents, noise, timesteps)
            for chunk in chunks:
                prediction = unet(noisy[chunk], timesteps[chunk], hidden[chunk], return_dict=False)[0]
                # Every image has the same number of elements, so weighting each chunk's mean by its
                # image count gives the mean over the whole set.
                chunk_loss = torch.nn.functional.mse_loss(prediction.float(), target[chunk].float())
                total += float(chunk_loss) * len(prediction) / len(examples)
    unet.train(was_training)
    return total / len(steps)


def _grad_scaler() -> Any:
    """fp16 needs loss scaling; ``torch.amp.GradScaler`` is torch >= 2.3, older containers have the cuda one."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def train(hp: Hyperparameters, examples: list[Example], components: dict[str, Any], device: torch.device,
          precision: str) -> TrainingResult:
    """Run ``max_train_steps`` optimizer steps; randomness comes from CPU generators seeded with ``seed``."""
    torch.manual_seed(hp.seed)
    generator = torch.Generator().manual_seed(hp.seed)
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    tokenizer, text_encoder, vae, unet = (components[k] for k in ("tokenizer", "text_encoder", "vae", "unet"))
    scheduler = components["noise_scheduler"]
    for module in (vae, text_encoder, unet):
        module.requires_grad_(False).to(device)
        if weight_dtype != torch.float32:  # the frozen weights; the LoRA weights added below stay fp32
            module.to(dtype=weight_dtype)
    vae.eval()
    text_encoder.eval()
    params = add_lora(unet, hp.rank)
    unet.train()
    optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=1e-2, eps=1e-8)
    scaler = _grad_scaler() if precision == "fp16" else None
    input_ids = tokenizer([e.caption for e in examples], max_length=tokenizer.model_max_length,
                          padding="max_length", truncation=True, return_tensors="pt").input_ids
    check_prediction_type(scheduler)  # before the evaluation pass encodes the whole set
    order = batches(len(examples), hp.train_batch_size, generator)
    eval_before = evaluation_loss(examples, components, input_ids, hp.resolution, device, weight_dtype,
                                  hp.train_batch_size)
    logger.info("training %d LoRA parameters (rank %d) for %d steps on %s, %s, batch %d x %d accumulation",
                sum(p.numel() for p in params), hp.rank, hp.max_train_steps, device, precision,
                hp.train_batch_size, hp.gradient_accumulation_steps)

    def micro_batch_loss(indices: list[int]) -> torch.Tensor:
        flips = [hp.random_flip and bool(torch.rand((), generator=generator) < 0.5) for _ in indices]
        pixels = torch.stack([load_pixels(examples[i].image, hp.resolution, hp.center_crop, f, generator)
                              for i, f in zip(indices, flips, strict=True)])
        with torch.no_grad():
            pixels = pixels.to(device, dtype=weight_dtype)
            latents = vae.encode(pixels).latent_dist.sample(generator=generator) * vae.config.scaling_factor
            hidden = text_encoder(input_ids[indices].to(device), return_dict=False)[0]
        noise = torch.randn(latents.shape, generator=generator).to(device, dtype=latents.dtype)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(indices),), generator=generator)
        timesteps = timesteps.long().to(device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = denoising_target(scheduler, latents, noise, timesteps)
        with torch.autocast(device.type, dtype=weight_dtype, enabled=precision != "no"):
            prediction = unet(noisy, timesteps, hidden, return_dict=False)[0]
        return torch.nn.functional.mse_loss(prediction.float(), target.float(), reduction="mean")

    losses: list[float] = []
    started = time.perf_counter()
    log_every = max(1, hp.max_train_steps // 10)
    for step in range(1, hp.max_train_steps + 1):
        step_loss = 0.0
        for _ in range(hp.gradient_accumulation_steps):
            loss = micro_batch_loss(next(order)) / hp.gradient_accumulation_steps
            (scaler.scale(loss) if scaler else loss).backward()
            step_loss += float(loss.detach())
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"the loss became {step_loss} at step {step}; lower learning_rate "
                                     "or train with mixed_precision bf16 or no")
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
        report_progress(step, hp.max_train_steps, step_loss)
        if step == 1 or step % log_every == 0 or step == hp.max_train_steps:
            elapsed = time.perf_counter() - started
            logger.info("step %d/%d loss %.6f (%.2f s/step)", step, hp.max_train_steps, step_loss, elapsed / step)
    seconds = time.perf_counter() - started
    eval_after = evaluation_loss(examples, components, input_ids, hp.resolution, device, weight_dtype,
                                  hp.train_batch_size)
    logger.info("first loss %.6f, last loss %.6f, %d steps in %.1f s", losses[0], losses[-1], len(losses), seconds)
    logger.info("evaluation loss on the training set (fixed timesteps and noise): %.6f before, %.6f after",
                eval_before, eval_after)
    return TrainingResult(losses=losses, seconds=seconds, device=str(device), mixed_precision=precision,
                          eval_loss_before=eval_before, eval_loss_after=eval_after)
