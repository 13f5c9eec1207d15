"""The LoRA adapter on the UNet's attention projections: added before training, saved after it.

The recipe and the saved layout are diffusers' text-to-image LoRA ones, so stock
``pipe.load_lora_weights(dir)`` (and localmaker's serving code) reads the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

# The adapter file's name; a copy of localmaker.spec.names.LORA_WEIGHTS_FILE, held equal by a test.
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
TARGET_MODULES = ("to_k", "to_q", "to_v", "to_out.0")


def add_lora(unet: Any, rank: int) -> list[torch.nn.Parameter]:
    """Freeze the UNet, add the LoRA adapter, and return its (fp32) parameters, the only trained ones."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(TARGET_MODULES))
    unet.add_adapter(config)
    params = [p for p in unet.parameters() if p.requires_grad]
    for param in params:
        param.data = param.data.float()  # frozen weights may be half; the trained ones stay fp32
    return params


def save_lora(unet: Any, model_dir: Path) -> Path:
    """``pytorch_lora_weights.safetensors`` in the layout ``pipe.load_lora_weights(dir)`` reads."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    layers = {name: tensor.detach().to("cpu", torch.float32).contiguous() for name, tensor in layers.items()}
    model_dir.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(str(model_dir), unet_lora_layers=layers, safe_serialization=True)
    return model_dir / LORA_WEIGHTS
