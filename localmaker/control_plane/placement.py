"""Decides where a simulated instance really runs: a local GPU when the type has one, else the CPU."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from localmaker.spec.instance_types import InstanceType

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu" or "cuda:N"

    @property
    def environment(self) -> dict[str, str]:
        """Env for the instance process; a CPU type hides the GPUs, as a real CPU instance has none."""
        if self.device == "cpu":
            return {"LOCALMAKER_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": ""}
        return {"LOCALMAKER_DEVICE": self.device}


def local_gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken CUDA install means "no GPU" here, not a crash
        return 0


def place(instance_type: InstanceType, instance_index: int, gpu_count: int | None = None) -> Placement:
    """Instances of a GPU type spread round-robin over the local GPUs."""
    if not instance_type.has_gpu:
        return Placement("cpu")
    available = local_gpu_count() if gpu_count is None else gpu_count
    if available == 0:
        logger.info("%s has a GPU but this machine has none: running on the CPU", instance_type.name)
        return Placement("cpu")
    return Placement(f"cuda:{instance_index % available}")
