"""The SageMaker training environment: the ``SM_*`` variables, and the device and precision they allow.

They are read once at start-up into a frozen object, and checked before any model loads, so that a job
asking for fp16 on a CPU instance fails in seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from training_errors import HyperparameterError, TrainingDataError


@dataclass(frozen=True)
class TrainingEnvironment:
    """The ``SM_*`` variables this script reads, read once at start-up."""

    training_channel: Path
    base_channel: Path | None
    model_dir: Path
    output_data_dir: Path
    num_gpus: int | None
    current_host: str

    @classmethod
    def from_environ(cls, environ: dict[str, str]) -> TrainingEnvironment:
        output_dir = Path(environ.get("SM_OUTPUT_DIR", "output"))
        num_gpus = environ.get("SM_NUM_GPUS")
        base = environ.get("SM_CHANNEL_BASE")
        return cls(
            training_channel=_training_channel(environ),
            base_channel=Path(base) if base else None,
            model_dir=Path(environ.get("SM_MODEL_DIR", "model")),
            output_data_dir=Path(environ.get("SM_OUTPUT_DATA_DIR", str(output_dir / "data"))),
            num_gpus=int(num_gpus) if num_gpus and num_gpus.strip().isdigit() else None,
            current_host=environ.get("SM_CURRENT_HOST", "algo-1"),
        )


def _training_channel(environ: dict[str, str]) -> Path:
    """``SM_CHANNEL_TRAINING``, or the only channel other than ``base`` when it has another name."""
    if environ.get("SM_CHANNEL_TRAINING"):
        return Path(environ["SM_CHANNEL_TRAINING"])
    try:
        channels = [str(c) for c in json.loads(environ.get("SM_CHANNELS", "[]"))]
    except ValueError:
        channels = []
    others = [c for c in channels if c != "base" and environ.get(f"SM_CHANNEL_{c.upper()}")]
    if len(others) == 1:
        return Path(environ[f"SM_CHANNEL_{others[0].upper()}"])
    raise TrainingDataError(
        f"no training images: SM_CHANNEL_TRAINING is not set (channels: {channels or 'none'}). Pass the image "
        "folder as the 'training' channel, e.g. estimator.fit({'training': 's3://bucket/images/'})"
    )


def resolve_device(num_gpus: int | None) -> torch.device:
    """CUDA when the job's instance has GPUs (``SM_NUM_GPUS``) and torch sees one, else the CPU."""
    if num_gpus != 0 and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def resolve_precision(requested: str | None, device: torch.device) -> str:
    """The recipe's default is bf16 where the GPU has it, else fp16; the CPU trains in fp32."""
    if device.type != "cuda":
        if requested in ("fp16", "bf16"):
            raise HyperparameterError(
                f"mixed_precision={requested} needs a CUDA GPU, and this job runs on the CPU; pass "
                "--mixed_precision no (or leave it out) or use a GPU instance type"
            )
        return "no"
    bf16_ok = torch.cuda.is_bf16_supported()
    if requested == "bf16" and not bf16_ok:
        raise HyperparameterError("mixed_precision=bf16 is not supported by this GPU; use fp16 or no")
    if requested is None:
        return "bf16" if bf16_ok else "fp16"
    return requested
