"""tiny-sd's VAE is a colour codec: what goes into a latent comes back out as the same colours."""

from __future__ import annotations

import torch

from localmaker.model.builders.tiny_sd import build_vae

FACTOR = 4  # tiny-sd's VAE downsamples 4x


def _blocky(low: torch.Tensor) -> torch.Tensor:
    return low.repeat_interleave(FACTOR, 2).repeat_interleave(FACTOR, 3)


def test_encode_is_the_pooled_image_and_decode_gives_it_back():
    vae = build_vae()
    low = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    image = _blocky(low)
    with torch.no_grad():
        posterior = vae.encode(image).latent_dist
        latents = posterior.sample(generator=torch.Generator().manual_seed(0))
        decoded = vae.decode(latents).sample
    assert torch.allclose(latents[:, :3], low, atol=2e-3)  # the RGB values, downsampled
    assert latents[:, 3].abs().max() < 1e-4  # the fourth channel is unused
    assert torch.allclose(decoded, image, atol=5e-3)


def test_per_image_colour_survives_unlike_a_random_vae():
    # GroupNorm normalises each image; without the codec's weights a dark and a bright image decode alike
    vae = build_vae()
    dark = torch.full((1, 4, 16, 16), -0.8)
    bright = torch.full((1, 4, 16, 16), 0.8)
    with torch.no_grad():
        means = [vae.decode(z).sample[:, :3].mean().item() for z in (dark, bright)]
    assert means[0] < -0.75 and means[1] > 0.75
