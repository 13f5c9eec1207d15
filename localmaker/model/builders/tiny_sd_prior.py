"""A short pre-training that gives tiny-sd's UNet a prior: smooth colour fields that follow the caption.

A random UNet is no denoiser: generation amplifies its noise until every image is saturated static,
and a LoRA trained on top changes nothing visible. After a short fit on smooth random colour fields
(through the colour-codec VAE) the tiny pipeline draws soft colour blobs, so a fine-tune such as the
neon-style LoRA shows up in the pictures, as it does on a real SD1.5.

The fields are tinted by their caption (``caption_palette``: the colours its words name), and about a third
of the samples have the empty caption over an untinted field, as SD1.5 was trained with caption dropout.
So the conditional and unconditional predictions differ, and classifier-free guidance and negative prompts
move the picture, as they do on SD1.5: on the sweep's jungle prompt, a warm tile at guidance 1, grey-green
at 7.5 and cyan-green at 20, a mean pixel difference of 15-23 out of 255 between those rows; fitted under
captions drawn independently of the images, as before, it was 3-6 and every tile looked the same. A fit
this short learns captioned against empty more than each caption's own colour: prompts share a drift.
The target is the velocity or the noise, as the scheduler's ``prediction_type`` says (tiny-sd's is
velocity: ``tiny_sd.TINY_SD_PREDICTION_TYPE`` says why).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger(__name__)

PRIOR_STEPS = 400
PRIOR_BATCH = 8
PRIOR_LEARNING_RATE = 3e-3
CAPTION_DROPOUT = 0.3  # the share of samples fitted under the empty caption, the pipeline's unconditional input
TINT = 0.8  # how far a captioned field is pulled towards its caption's palette

# RGB in [0, 1] for the words of typical prompts that carry a colour. A caption's palette is the mean of
# those it contains; a caption with none gets a hue of its own from its text (``caption_palette``).
WORD_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1), "orange": (1.0, 0.55, 0.1), "yellow": (1.0, 0.9, 0.1), "golden": (1.0, 0.75, 0.2),
    "green": (0.1, 0.75, 0.2), "jungle": (0.1, 0.55, 0.15), "forest": (0.1, 0.45, 0.15),
    "blue": (0.15, 0.3, 0.95), "sky": (0.4, 0.65, 1.0), "sea": (0.05, 0.35, 0.7), "cold": (0.3, 0.7, 0.95),
    "purple": (0.55, 0.15, 0.8), "pink": (1.0, 0.45, 0.7), "neon": (1.0, 0.1, 0.85), "cyberpunk": (0.6, 0.1, 1.0),
    "white": (0.95, 0.95, 0.95), "snowy": (0.9, 0.93, 1.0), "black": (0.05, 0.05, 0.05),
    "night": (0.05, 0.05, 0.25), "sunset": (1.0, 0.45, 0.2), "warm": (1.0, 0.6, 0.3), "desert": (0.85, 0.6, 0.3),
    "muted": (0.5, 0.5, 0.5), "pastel": (0.85, 0.75, 0.85), "blurry": (0.45, 0.4, 0.35),
}


def colour_fields(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth random images in [-1, 1]: a 4×4 grid of colours, blended, at a random brightness."""
    low = torch.rand(count, 3, 4, 4, generator=generator)
    brightness = torch.rand(count, 1, 1, 1, generator=generator) * 0.9 + 0.1
    fields = torch.nn.functional.interpolate(low * brightness, size=(size, size), mode="bilinear",
                                             align_corners=False)
    return fields * 2 - 1


def caption_palette(caption: str) -> torch.Tensor:
    """The colour a caption asks for, RGB in [0, 1]: its colour words averaged, else a hue from its text
    (stable across processes, unlike ``hash``)."""
    named = [WORD_COLOURS[word] for word in re.findall(r"[a-z]+", caption.lower()) if word in WORD_COLOURS]
    if named:
        return torch.tensor(named).mean(dim=0)
    hue = int(hashlib.sha256(caption.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return torch.tensor([0.5 + 0.4 * math.cos(2 * math.pi * (hue - third)) for third in (0.0, 1 / 3, 2 / 3)])


def captioned_fields(palettes: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Colour fields pulled towards each row of ``palettes`` (RGB in [0, 1]; NaN rows stay untinted)."""
    fields = (colour_fields(len(palettes), size, generator) + 1) / 2
    tinted = ~palettes.isnan().any(dim=1)
    fields[tinted] = fields[tinted] * (1 - TINT) + palettes[tinted, :, None, None] * TINT
    return fields * 2 - 1


_FITTED: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}


def apply_prior(unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, scheduler_config: Any,
                captions: tuple[str, ...], size: int, steps: int = PRIOR_STEPS,
                on_step: Callable[[int], None] | None = None) -> None:
    """Give ``unet`` the fitted prior. The fit is deterministic (seeded, one thread), so a process
    fits once and reuses the weights for every later build of the same configuration. ``on_step(n)``
    hears of each fitted step (n from 1 to ``steps``); a reused fit calls it with ``steps`` once."""
    key = (unet.config.to_json_string() if hasattr(unet.config, "to_json_string") else repr(unet.config), size, steps)
    if key not in _FITTED:
        fit_prior(unet, vae, text_encoder, tokenizer, scheduler_config, captions, size, steps, on_step)
        _FITTED[key] = {name: value.detach().clone() for name, value in unet.state_dict().items()}
    elif on_step is not None:
        on_step(steps)
    unet.load_state_dict(_FITTED[key])
    unet.eval()


def fit_prior(unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, scheduler_config: Any,
              captions: tuple[str, ...], size: int, steps: int = PRIOR_STEPS,
              on_step: Callable[[int], None] | None = None) -> float:
    """Denoising training of the whole UNet on colour fields tinted by their captions (the empty caption
    over untinted fields for ``CAPTION_DROPOUT`` of them); returns the last loss. Runs on one thread: a CPU
    reduction split over more threads rounds differently, and a build must give the same bytes on any
    machine setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(unet, vae, text_encoder, tokenizer, scheduler_config, captions, size, steps, on_step)
    finally:
        torch.set_num_threads(threads)


def _fit(unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, scheduler_config: Any,
         captions: tuple[str, ...], size: int, steps: int, on_step: Callable[[int], None] | None) -> float:
    from diffusers import DDPMScheduler

    generator = torch.Generator().manual_seed(0)
    noise_scheduler = DDPMScheduler.from_config(scheduler_config)
    # A fast tokenizer remembers padding and truncation once used, and would save them: use a copy.
    tokenizer = copy.deepcopy(tokenizer)
    with torch.no_grad():
        ids = tokenizer([""] + list(captions), padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        embeddings = text_encoder(ids)[0]
    palettes = torch.stack([torch.full((3,), float("nan"))] + [caption_palette(c) for c in captions])
    optimizer = torch.optim.AdamW(unet.parameters(), lr=PRIOR_LEARNING_RATE)
    # Decaying to zero settles the weights; stopped at full rate, their last noisy steps show as speckle.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    started = time.perf_counter()
    unet.train()
    loss = torch.tensor(float("nan"))
    for step in range(1, steps + 1):
        picked = torch.randint(1, len(embeddings), (PRIOR_BATCH,), generator=generator)
        picked[torch.rand(PRIOR_BATCH, generator=generator) < CAPTION_DROPOUT] = 0
        with torch.no_grad():
            latents = vae.encode(captioned_fields(palettes[picked], size, generator)).latent_dist.mean
            latents = latents * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (PRIOR_BATCH,),
                                  generator=generator)
        conditions = embeddings[picked]
        prediction = unet(noise_scheduler.add_noise(latents, noise, timesteps), timesteps, conditions).sample
        target = noise if noise_scheduler.config.prediction_type == "epsilon" else (
            noise_scheduler.get_velocity(latents, noise, timesteps))
        loss = torch.nn.functional.mse_loss(prediction, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if on_step is not None:
            on_step(step)
    unet.eval()
    logger.info("fitted tiny-sd's colour-field prior: %d steps in %.1f s, final loss %.4f",
                steps, time.perf_counter() - started, loss.item())
    return float(loss.item())
