"""Where the model runs and in which precision, chosen once from the settings and the hardware.

Half precision halves memory and doubles throughput on a GPU, but CPUs are slow (or lossy) at it, so
the default is float32 on CPU and, on CUDA, bfloat16 (float16 on GPUs without bf16) for embeddings and
float16 for Stable Diffusion, whose UNet and VAE were trained and are usually served in fp16. Both can
be forced with ``LOCALMAKER_DEVICE`` / ``LOCALMAKER_DTYPE``.
"""

from __future__ import annotations

import logging

import torch
import transformers
from serving_errors import ModelLoadError

logger = logging.getLogger(__name__)


def resolve_device(requested: str | None) -> torch.device:
    """The requested device, or CUDA when present, else the CPU."""
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"LOCALMAKER_DEVICE={requested!r} is not a torch device: use e.g. cpu, cuda or cuda:0."
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"LOCALMAKER_DEVICE={requested!r} asks for CUDA but no CUDA device is available: "
            "set LOCALMAKER_DEVICE=cpu or unset it."
        )
    return device


def resolve_dtype(device: torch.device, requested: str | None, cuda_default: torch.dtype | None = None) -> torch.dtype:
    """The requested dtype, else float32 on CPU and on CUDA ``cuda_default`` or bfloat16 (or float16)."""
    if requested is not None:
        dtype = getattr(torch, requested)
        assert isinstance(dtype, torch.dtype)
        return dtype
    if device.type == "cuda":
        if cuda_default is not None:
            return cuda_default
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def diffusers_dtype_kwarg_name() -> str:
    """diffusers' ``from_pretrained`` took ``torch_dtype`` and prefers ``dtype`` since 0.42.

    An older diffusers ignores an unknown ``dtype`` (loading fp32), so ``torch_dtype`` stays the
    choice until the version is known to read ``dtype``.
    """
    import diffusers

    major, minor = (int(part) for part in diffusers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (0, 42) else "torch_dtype"


def dtype_kwarg_name() -> str:
    """``from_pretrained`` took ``torch_dtype`` before transformers 4.56 and ``dtype`` since."""
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
