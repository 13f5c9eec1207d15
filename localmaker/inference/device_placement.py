"""Where the model runs and in which precision, chosen once from the settings and the hardware.

Half precision halves memory and doubles throughput on a GPU, but CPUs are slow (or lossy) at it, so
the default is float32 on CPU and bfloat16 (float16 on GPUs without bf16) on CUDA. Both can be forced
with ``LOCALMAKER_DEVICE`` / ``LOCALMAKER_DTYPE``.
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


def resolve_dtype(device: torch.device, requested: str | None) -> torch.dtype:
    """The requested dtype, else float32 on CPU and bfloat16 (or float16) on CUDA."""
    if requested is not None:
        dtype = getattr(torch, requested)
        assert isinstance(dtype, torch.dtype)
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def dtype_kwarg_name() -> str:
    """``from_pretrained`` took ``torch_dtype`` before transformers 4.56 and ``dtype`` since."""
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
