"""Hand-set weights that turn a tiny ``AutoencoderKL`` into a faithful colour codec.

A random-weight VAE decodes every latent to the same grey-ish noise: its GroupNorms normalise each
image, so colour never reaches the output and nothing trained on top of it (a LoRA, say) can change
how an image looks. tiny-sd sets its VAE by hand instead: the latent's first three channels are the
RGB values of the image, 2× downsampled, and the decoder maps them back. Every residual branch and
attention block is zeroed, so only the main path acts.

The one obstacle is GroupNorm on that path. Each colour travels with its negation and a constant
pair ``(x, -x, K, -K)`` in one group: the group mean is then exactly zero and its variance is
``K²/2`` up to ``E[x²]/K²``, so the norm is a fixed scale that the affine weights undo. SiLU is made
linear by an offset that keeps its input far on the positive side.
"""

from __future__ import annotations

from typing import Any

import torch

K = 30.0  # the constant companion: large against colours, small enough for fp16's range squared
OFFSET = 10.0  # SiLU(z + 10) - 10 is z to within 5e-4 for z > -2
COLOURS = 3
TUPLE = 4  # (x, -x, K, -K) per colour


def colour_layout(channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For a feature map of ``channels``: (colour → channel weights, constant bias) of the layout."""
    mix = torch.zeros(channels, COLOURS)
    bias = torch.zeros(channels)
    for colour in range(COLOURS):
        base = TUPLE * colour
        mix[base, colour], mix[base + 1, colour] = 1.0, -1.0
        bias[base + 2], bias[base + 3] = K, -K
    return mix, bias


def _zero(module: torch.nn.Module) -> None:
    for parameter in module.parameters():
        parameter.data.zero_()


def _identity_residuals(block: Any) -> None:
    """Zero every residual branch and attention output; keep and set any 1×1 shortcut to identity."""
    for resnet in getattr(block, "resnets", []):
        _zero(resnet.conv2)
        if resnet.conv_shortcut is not None:
            _zero(resnet.conv_shortcut)
            shared = min(resnet.conv_shortcut.in_channels, resnet.conv_shortcut.out_channels)
            resnet.conv_shortcut.weight.data[:shared, :shared, 0, 0] = torch.eye(shared)
    for attention in getattr(block, "attentions", None) or []:
        _zero(attention.to_out[0])


def _centre_tap(conv: torch.nn.Conv2d, matrix: torch.Tensor, bias: torch.Tensor) -> None:
    """A 3×3 (or 1×1) conv that applies ``matrix`` to each pixel and adds ``bias``."""
    _zero(conv)
    centre = conv.kernel_size[0] // 2
    conv.weight.data[: matrix.shape[0], : matrix.shape[1], centre, centre] = matrix
    assert conv.bias is not None, "the VAE's convolutions all carry a bias"
    conv.bias.data[: bias.shape[0]] = bias


def _mean_pool(conv: torch.nn.Conv2d) -> None:
    """diffusers' downsampler pads right/bottom and strides 2: average each 2×2 block per channel."""
    _zero(conv)
    for channel in range(conv.out_channels):
        conv.weight.data[channel, channel, :2, :2] = 0.25


def _nearest(conv: torch.nn.Conv2d) -> None:
    """The upsampler's conv after nearest interpolation: the identity, per channel."""
    _centre_tap(conv, torch.eye(conv.out_channels), torch.zeros(conv.out_channels))


def _linear_norm(norm: torch.nn.GroupNorm, offset: float) -> None:
    """Undo the fixed scale GroupNorm gives each layout channel, and shift by ``offset`` for SiLU."""
    group = norm.num_channels // norm.num_groups
    constants = torch.zeros(norm.num_channels)
    constants[: TUPLE * COLOURS] = colour_layout(norm.num_channels)[1][: TUPLE * COLOURS].abs()
    for start in range(0, norm.num_channels, group):
        members = constants[start : start + group]
        spread = float(torch.sqrt((members**2).sum() / group))  # the group's std, to leading order
        norm.weight.data[start : start + group] = spread if spread > 0 else 1.0
    norm.bias.data.fill_(offset)


def make_colour_codec(vae: Any) -> Any:
    """Set ``vae``'s weights in place: encode(x) ≈ 2×2-mean-pooled RGB, decode(z) ≈ nearest-upsampled z.

    Expects two blocks (one downsampler), GroupNorm groups that hold whole ``(x, -x, K, -K)`` tuples,
    and at least 4 latent channels; the fourth latent channel stays zero.
    """
    encoder, decoder = vae.encoder, vae.decoder
    first = encoder.conv_in.out_channels
    mix, bias = colour_layout(first)
    _centre_tap(encoder.conv_in, mix, bias)
    for block in encoder.down_blocks:
        _identity_residuals(block)
        for sampler in block.downsamplers or []:
            _mean_pool(sampler.conv)
    _identity_residuals(encoder.mid_block)
    _linear_norm(encoder.conv_norm_out, OFFSET)
    # conv_out picks x back out of the layout; the log-variance half is very negative so sampling
    # the latent distribution returns its mean.
    latents = vae.config.latent_channels
    picks = torch.zeros(2 * latents, encoder.conv_out.in_channels)
    for colour in range(COLOURS):
        picks[colour, TUPLE * colour] = 1.0
    out_bias = torch.zeros(2 * latents)
    out_bias[:COLOURS] = -OFFSET
    out_bias[latents:] = -30.0
    _centre_tap(encoder.conv_out, picks, out_bias)
    _centre_tap(vae.quant_conv, torch.eye(2 * latents), torch.zeros(2 * latents))

    _centre_tap(vae.post_quant_conv, torch.eye(latents), torch.zeros(latents))
    mix, bias = colour_layout(decoder.conv_in.out_channels)
    _centre_tap(decoder.conv_in, mix, bias)
    _identity_residuals(decoder.mid_block)
    for block in decoder.up_blocks:
        _identity_residuals(block)
        for sampler in block.upsamplers or []:
            _nearest(sampler.conv)
    _linear_norm(decoder.conv_norm_out, OFFSET)
    picks = torch.zeros(COLOURS, decoder.conv_out.in_channels)
    for colour in range(COLOURS):
        picks[colour, TUPLE * colour] = 1.0
    _centre_tap(decoder.conv_out, picks, torch.full((COLOURS,), -OFFSET))
    return vae
