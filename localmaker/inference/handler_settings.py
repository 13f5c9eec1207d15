"""The handler's configuration, read from the environment once, when model_fn runs.

Reading at import time would freeze whatever environment the importer had, and reading per request
would let settings drift under a running model. One frozen object, built in model_fn and validated
there, makes a wrong value fail the endpoint at start-up with a message that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serving_errors import ModelLoadError

POOLING_MODES = ("mean", "last_token", "cls")
DTYPES = ("float32", "float16", "bfloat16")
ONNX_BACKEND = "onnxruntime"  # CPU, float32, opt-in (onnx_encoder.py)
EMBEDDING_BACKENDS = ("torch", ONNX_BACKEND)
# Texts per embedding forward pass (LOCALMAKER_BATCH_SIZE), not requests per batch (SAGEMAKER_TS_BATCH_SIZE).
DEFAULT_TEXTS_PER_BATCH = 32
# Padded tokens per embedding forward pass (rows x longest row): caps activation memory for long texts.
DEFAULT_MAX_BATCH_TOKENS = 16384
# Pixels one diffusion request may ask for (images x height x width): four 768x768 images by default.
DEFAULT_MAX_PIXELS = 4 * 768 * 768

ENV_DEVICE = "LOCALMAKER_DEVICE"
ENV_DTYPE = "LOCALMAKER_DTYPE"
ENV_POOLING = "LOCALMAKER_POOLING"
ENV_TRUST_REMOTE_CODE = "LOCALMAKER_TRUST_REMOTE_CODE"
ENV_ALLOW_PICKLE = "LOCALMAKER_ALLOW_PICKLE"
ENV_CACHE_DIR = "LOCALMAKER_CACHE_DIR"
ENV_BATCH_SIZE = "LOCALMAKER_BATCH_SIZE"
ENV_MAX_BATCH_TOKENS = "LOCALMAKER_MAX_BATCH_TOKENS"
ENV_JOINT_DIFFUSION = "LOCALMAKER_JOINT_DIFFUSION_BATCHES"
ENV_SAFETY_CHECKER = "LOCALMAKER_SAFETY_CHECKER"
ENV_TORCH_COMPILE = "LOCALMAKER_TORCH_COMPILE"
ENV_MAX_PIXELS = "LOCALMAKER_MAX_PIXELS"
ENV_EMBEDDING_BACKEND = "LOCALMAKER_EMBEDDING_BACKEND"
ENV_PACKED_BATCHES = "LOCALMAKER_PACKED_BATCHES"
ENV_EMBEDDING_LANES = "LOCALMAKER_EMBEDDING_LANES"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class HandlerSettings:
    """Everything the handler takes from the environment. ``None`` means "choose automatically"."""

    device: str | None = None
    dtype: str | None = None
    pooling: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    cache_dir: Path | None = None
    batch_size: int = DEFAULT_TEXTS_PER_BATCH
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    # Whether gathered diffusion requests of one shape run as one pipeline call; None: on CUDA only.
    joint_diffusion_batches: bool | None = None
    safety_checker: bool = True
    torch_compile: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    embedding_backend: str = "torch"
    # Whether the torch embedding pass runs packed texts (packed_encoder.py); None: on the CPU only, where
    # it was measured.
    packed_batches: bool | None = None
    # Embedding batches run at once, each on its share of the threads; None: one per thread on the CPU,
    # else 1.
    embedding_lanes: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HandlerSettings:
        """Validate and collect the ``LOCALMAKER_*`` variables (``os.environ`` by default)."""
        env = os.environ if environ is None else environ
        return cls(
            device=_optional(env, ENV_DEVICE),
            dtype=_choice(env, ENV_DTYPE, DTYPES),
            pooling=_choice(env, ENV_POOLING, POOLING_MODES),
            trust_remote_code=_flag(env, ENV_TRUST_REMOTE_CODE),
            allow_pickle=_flag(env, ENV_ALLOW_PICKLE),
            cache_dir=Path(cache) if (cache := _optional(env, ENV_CACHE_DIR)) else None,
            batch_size=_positive_int(env, ENV_BATCH_SIZE, DEFAULT_TEXTS_PER_BATCH),
            max_batch_tokens=_positive_int(env, ENV_MAX_BATCH_TOKENS, DEFAULT_MAX_BATCH_TOKENS),
            joint_diffusion_batches=_flag(env, ENV_JOINT_DIFFUSION) if _optional(env, ENV_JOINT_DIFFUSION) else None,
            safety_checker=_flag(env, ENV_SAFETY_CHECKER, default=True),
            torch_compile=_flag(env, ENV_TORCH_COMPILE),
            max_pixels=_positive_int(env, ENV_MAX_PIXELS, DEFAULT_MAX_PIXELS),
            embedding_backend=_choice(env, ENV_EMBEDDING_BACKEND, EMBEDDING_BACKENDS) or "torch",
            packed_batches=_flag(env, ENV_PACKED_BATCHES) if _optional(env, ENV_PACKED_BATCHES) else None,
            embedding_lanes=_positive_int(env, ENV_EMBEDDING_LANES, 0) or None,
        )


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = _optional(env, name)
    if value is None:
        return None
    if value.lower() not in allowed:
        raise ModelLoadError(
            f"{name}={value!r} is not supported: set it to one of {', '.join(allowed)}, or unset it "
            "to choose automatically."
        )
    return value.lower()


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ModelLoadError(f"{name}={value!r} is not a flag: set it to 1 to enable or 0 (or unset) to disable.")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _optional(env, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ModelLoadError(f"{name}={value!r} must be a positive integer, e.g. {default}.")
    return number
