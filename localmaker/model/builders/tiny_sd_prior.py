"""A short pre-training that gives tiny-sd's UNet a prior: smooth colour fields.

A random UNet is no denoiser: generation amplifies its noise until every image is saturated static,
and a LoRA trained on top changes nothing visible. After a short fit on smooth random colour fields
(through the colour-codec VAE) the tiny pipeline draws soft colour blobs, so a fine-tune such as the
neon-style LoRA shows up in the pictures, as it does on a real SD1.5.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger(__name__)

PRIOR_STEPS = 300
PRIOR_BATCH = 8
PRIOR_LEARNING_RATE = 1e-3


def colour_fields(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth random images in [-1, 1]: a 4×4 grid of colours, blended, at a random brightness."""
    low = torch.rand(count, 3, 4, 4, generator=generator)
    brightness = torch.rand(count, 1, 1, 1, generator=generator) * 0.9 + 0.1
    fields = torch.nn.functional.interpolate(low * brightness, size=(size, size), mode="bilinear",
                                             align_corners=False)
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
    """Noise-prediction training of the whole UNet on colour fields, captioned at random; returns the
    last loss. Runs on one thread: a CPU reduction split over more threads rounds differently, and a
    build must give the same bytes on any machine setting."""
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
        ids = tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        embeddings = text_encoder(ids)[0]
    optimizer = torch.optim.AdamW(unet.parameters(), lr=PRIOR_LEARNING_RATE)
    started = time.perf_counter()
    unet.train()
    loss = torch.tensor(float("nan"))
    for step in range(1, steps + 1):
        with torch.no_grad():
            latents = vae.encode(colour_fields(PRIOR_BATCH, size, generator)).latent_dist.mean
            latents = latents * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (PRIOR_BATCH,),
                                  generator=generator)
        conditions = embeddings[torch.randint(0, len(embeddings), (PRIOR_BATCH,), generator=generator)]
        prediction = unet(noise_scheduler.add_noise(latents, noise, timesteps), timesteps, conditions).sample
        loss = torch.nn.functional.mse_loss(prediction, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step(step)
    unet.eval()
    logger.info("fitted tiny-sd's colour-field prior: %d steps in %.1f s, final loss %.4f",
                steps, time.perf_counter() - started, loss.item())
    return float(loss.item())
