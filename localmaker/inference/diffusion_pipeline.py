"""A Stable Diffusion pipeline loaded the way production loads it: ``StableDiffusionPipeline.from_pretrained``.

The same code serves the tiny random-weight test pipeline and the real SD1.5. What the directory holds
decides the rest: a safety checker is kept when the directory ships one (unless the operator turns it
off), and a ``pytorch_lora_weights.safetensors`` beside ``model_index.json`` is loaded as a LoRA whose
strength each request may set. Weights load from safetensors only unless the operator opts in to
pickle, because unpickling a downloaded ``.bin`` runs arbitrary code.

diffusers is imported inside the functions: an embedding endpoint never pays for importing it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from device_placement import diffusers_dtype_kwarg_name, resolve_device, resolve_dtype
from handler_settings import ENV_ALLOW_PICKLE, ENV_SAFETY_CHECKER, ENV_TORCH_COMPILE, HandlerSettings
from serving_errors import ModelLoadError

logger = logging.getLogger(__name__)

PIPELINE_CLASS = "StableDiffusionPipeline"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
PICKLED_LORA_WEIGHTS = "pytorch_lora_weights.bin"
_WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder", "safety_checker")
_PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


@dataclass
class DiffusionModel:
    """The loaded pipeline and what was decided about it at load time."""

    pipe: Any
    device: torch.device
    dtype: torch.dtype
    native_size: int
    lora_loaded: bool
    safety_checker: bool
    compiled: bool

    @classmethod
    def load(cls, model_dir: Path, settings: HandlerSettings) -> DiffusionModel:
        """Load the ``StableDiffusionPipeline`` in ``model_dir`` (a directory with model_index.json)."""
        from diffusers import StableDiffusionPipeline
        from diffusers.models.attention_processor import AttnProcessor2_0

        index = _read_model_index(model_dir)
        device = resolve_device(settings.device)
        dtype = resolve_dtype(device, settings.dtype, cuda_default=torch.float16)
        use_safetensors = _check_weight_files(model_dir, settings.allow_pickle)
        ships_checker = _ships_safety_checker(model_dir, index)
        keep_checker = ships_checker and settings.safety_checker
        if ships_checker and not keep_checker:
            logger.warning(
                "the pipeline's safety checker is off (%s=0): images are returned unfiltered", ENV_SAFETY_CHECKER
            )
        kwargs: dict[str, Any] = {} if keep_checker else {"safety_checker": None, "requires_safety_checker": False}
        kwargs[diffusers_dtype_kwarg_name()] = dtype
        pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), use_safetensors=use_safetensors, **kwargs)
        # diffusers picks PyTorch's scaled_dot_product_attention on torch 2 already; setting it makes
        # that a guarantee rather than a default that a diffusers release could change.
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.vae.set_attn_processor(AttnProcessor2_0())
        lora_file = _lora_file(model_dir, settings.allow_pickle)
        if lora_file is not None:
            pipe.load_lora_weights(str(model_dir), weight_name=lora_file.name)
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        native_size = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
        compiled = _tune_for_cuda(pipe, device, settings.torch_compile)
        model = cls(
            pipe=pipe,
            device=device,
            dtype=dtype,
            native_size=native_size,
            lora_loaded=lora_file is not None,
            safety_checker=pipe.safety_checker is not None,
            compiled=compiled,
        )
        logger.info(
            "loaded diffusion pipeline %s on %s (%s), native size %d, LoRA %s, safety checker %s, compiled %s",
            model_dir,
            device,
            str(dtype).removeprefix("torch."),
            native_size,
            lora_file.name if lora_file else "none",
            "on" if model.safety_checker else "off",
            compiled,
        )
        return model

    def with_scheduler(self, scheduler: Any) -> Any:
        """A shallow copy of the pipeline (same weights) that runs ``scheduler``; the original is untouched."""
        pipe = self.pipe
        copy = type(pipe)(
            **{**pipe.components, "scheduler": scheduler},
            requires_safety_checker=bool(pipe.config.requires_safety_checker),
        )
        copy.set_progress_bar_config(disable=True)
        return copy


def _read_model_index(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "model_index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}. Fix the file or re-save the pipeline.") from exc
    if not isinstance(index, dict) or index.get("_class_name") != PIPELINE_CLASS:
        found = index.get("_class_name") if isinstance(index, dict) else None
        raise ModelLoadError(
            f"{path} describes a {found!r} pipeline; this handler serves {PIPELINE_CLASS} (Stable Diffusion 1.x "
            "and 2.x). Deploy such a pipeline, or bring your own inference.py with source_dir."
        )
    return index


def _ships_safety_checker(model_dir: Path, index: dict[str, Any]) -> bool:
    entry = index.get("safety_checker")
    declared = isinstance(entry, list) and any(part is not None for part in entry)
    return declared and (model_dir / "safety_checker").is_dir()


def _check_weight_files(model_dir: Path, allow_pickle: bool) -> bool | None:
    """``use_safetensors`` for from_pretrained; refuses pickle-only components unless opted in."""
    pickled = []
    for name in _WEIGHT_COMPONENTS:
        folder = model_dir / name
        if not folder.is_dir() or any(folder.glob("*.safetensors")):
            continue
        if any(path for pattern in _PICKLE_PATTERNS for path in folder.glob(pattern)):
            pickled.append(name)
    if not pickled:
        return True
    if not allow_pickle:
        raise ModelLoadError(
            f"{model_dir} has no *.safetensors weights for {', '.join(pickled)}. Convert the pipeline to "
            f"safetensors (pipe.save_pretrained(dir, safe_serialization=True)), or set {ENV_ALLOW_PICKLE}=1 to "
            "allow loading pickled .bin weights, which can run arbitrary code."
        )
    logger.warning("loading pickled weights for %s (%s=1)", ", ".join(pickled), ENV_ALLOW_PICKLE)
    return None  # diffusers then takes safetensors where present and .bin elsewhere


def _lora_file(model_dir: Path, allow_pickle: bool) -> Path | None:
    safe = model_dir / LORA_WEIGHTS
    if safe.is_file():
        return safe
    pickled = model_dir / PICKLED_LORA_WEIGHTS
    if not pickled.is_file():
        return None
    if not allow_pickle:
        raise ModelLoadError(
            f"{pickled} is a pickled LoRA. Save it as {LORA_WEIGHTS} (save_lora_weights(..., "
            f"safe_serialization=True)), or set {ENV_ALLOW_PICKLE}=1 to allow loading it, which can run "
            "arbitrary code."
        )
    return pickled


def _tune_for_cuda(pipe: Any, device: torch.device, torch_compile: bool) -> bool:
    """channels_last for the convolutions and, when asked, a compiled UNet; True when compiled."""
    if device.type != "cuda":
        if torch_compile:
            logger.warning("%s=1 is ignored on %s: the UNet is compiled on CUDA only", ENV_TORCH_COMPILE, device)
        return False
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    if not torch_compile:
        return False
    # The first call at a new shape (size, batch) compiles; model_fn warms the default shape up front. Hooks
    # on the wrapper (the step timer's) stay outside the compiled graph. With a LoRA, a new lora_scale value
    # also recompiles, since it changes the LoRA layers' scaling.
    pipe.unet = torch.compile(pipe.unet)
    return True
