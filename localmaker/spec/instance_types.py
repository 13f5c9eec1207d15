"""The SageMaker instance types localmaker can simulate, with the facts deploy() prints.

Figures are AWS's published specifications. They describe the instance being rehearsed; the endpoint
itself runs on this machine's CPU or GPU.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from localmaker.errors import ConfigurationError


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: int
    gpu_count: int = 0
    gpu_model: str = ""
    gpu_memory_gib: int = 0  # per GPU

    @property
    def has_gpu(self) -> bool:
        return self.gpu_count > 0

    def describe(self) -> str:
        host = f"{self.vcpus} vCPU, {self.memory_gib} GiB"
        if not self.has_gpu:
            return f"{self.name} ({host}, no GPU)"
        gpus = f"{self.gpu_count} x " if self.gpu_count > 1 else ""
        return f"{self.name} ({gpus}{self.gpu_model} {self.gpu_memory_gib} GiB, {host})"


_CATALOGUE = [
    InstanceType("ml.t2.medium", 2, 4),
    InstanceType("ml.m5.large", 2, 8),
    InstanceType("ml.m5.xlarge", 4, 16),
    InstanceType("ml.m5.2xlarge", 8, 32),
    InstanceType("ml.m5.4xlarge", 16, 64),
    InstanceType("ml.c5.xlarge", 4, 8),
    InstanceType("ml.c5.2xlarge", 8, 16),
    InstanceType("ml.c5.4xlarge", 16, 32),
    InstanceType("ml.m6i.xlarge", 4, 16),
    InstanceType("ml.c6i.xlarge", 4, 8),
    InstanceType("ml.g4dn.xlarge", 4, 16, 1, "NVIDIA T4", 16),
    InstanceType("ml.g4dn.2xlarge", 8, 32, 1, "NVIDIA T4", 16),
    InstanceType("ml.g4dn.12xlarge", 48, 192, 4, "NVIDIA T4", 16),
    InstanceType("ml.g5.xlarge", 4, 16, 1, "NVIDIA A10G", 24),
    InstanceType("ml.g5.2xlarge", 8, 32, 1, "NVIDIA A10G", 24),
    InstanceType("ml.g5.4xlarge", 16, 64, 1, "NVIDIA A10G", 24),
    InstanceType("ml.g5.12xlarge", 48, 192, 4, "NVIDIA A10G", 24),
    InstanceType("ml.g5.48xlarge", 192, 768, 8, "NVIDIA A10G", 24),
    InstanceType("ml.g6.xlarge", 4, 16, 1, "NVIDIA L4", 24),
    InstanceType("ml.g6.2xlarge", 8, 32, 1, "NVIDIA L4", 24),
    InstanceType("ml.g6e.xlarge", 4, 32, 1, "NVIDIA L40S", 48),
    InstanceType("ml.p3.2xlarge", 8, 61, 1, "NVIDIA V100", 16),
    InstanceType("ml.p4d.24xlarge", 96, 1152, 8, "NVIDIA A100", 40),
    InstanceType("ml.p5.48xlarge", 192, 2048, 8, "NVIDIA H100", 80),
]

CATALOGUE: dict[str, InstanceType] = {t.name: t for t in _CATALOGUE}


def lookup(name: str) -> InstanceType:
    """The catalogue entry, or a ConfigurationError that suggests the closest real names."""
    found = CATALOGUE.get(name)
    if found is not None:
        return found
    if name in ("local", "local_gpu"):
        raise ConfigurationError(
            f"instance_type {name!r} is SageMaker local mode (Docker); localmaker rehearses real "
            "instance types instead: use e.g. 'ml.m5.xlarge' (CPU) or 'ml.g5.xlarge' (GPU)"
        )
    close = difflib.get_close_matches(name, CATALOGUE, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else (
        f"known types: {', '.join(sorted(CATALOGUE))}"
    )
    raise ConfigurationError(f"unknown instance_type {name!r}; {hint}")
