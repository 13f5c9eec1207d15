"""ServerlessConfig: what CreateEndpointConfig accepts for a serverless variant, and the memory it grants.

AWS's contract (ProductionVariantServerlessConfig): ``MemorySizeInMB`` one of 1024, 2048, 3072, 4096,
5120 or 6144; ``MaxConcurrency`` 1 to 200; ``ProvisionedConcurrency`` 1 to 200 and no more than
``MaxConcurrency``. A variant is either instance-backed (``InstanceType``) or serverless, never both;
serverless compute has no GPU, so a GPU type or an Elastic Inference ``AcceleratorType`` next to a
ServerlessConfig is refused, and so is a second variant (serverless endpoints take one). Range errors use
AWS's constraint wording ("1 validation error detected: Value '...' at '...' failed to satisfy
constraint: ..."), with the member path AWS names; the rest say what to change.

Memory: a serverless endpoint's model has to fit in ``MemorySizeInMB``. localmaker measures the unpacked
model (every file of the artifact outside ``code/``) before any instance starts, because the weights
alone must fit; the resident memory of the running process is not measured, so a model that fits on
disk but grows at load is not caught.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localmaker.control_plane.api_errors import ValidationException
from localmaker.spec.instance_types import lookup
from localmaker.spec.names import CODE_FOLDER

MEMORY_SIZES_MB = (1024, 2048, 3072, 4096, 5120, 6144)
MAX_CONCURRENCY = 200
MEBIBYTE = 1024 * 1024


@dataclass(frozen=True)
class ServerlessConfig:
    memory_size_mb: int
    max_concurrency: int
    provisioned_concurrency: int | None = None

    @classmethod
    def from_request(cls, raw: Mapping[str, Any]) -> ServerlessConfig:
        provisioned = raw.get("ProvisionedConcurrency")
        return cls(int(raw["MemorySizeInMB"]), int(raw["MaxConcurrency"]),
                   None if provisioned is None else int(provisioned))

    @property
    def provisioned(self) -> int:
        """Instances kept warm: none unless ProvisionedConcurrency says."""
        return self.provisioned_concurrency or 0

    def request(self) -> dict[str, int]:
        """The config in the API's shape, unset members left out."""
        shaped = {"MemorySizeInMB": self.memory_size_mb, "MaxConcurrency": self.max_concurrency}
        if self.provisioned_concurrency is not None:
            shaped["ProvisionedConcurrency"] = self.provisioned_concurrency
        return shaped


def check_production_variants(variants: list[Any]) -> None:
    """Refuse, in AWS's words, a CreateEndpointConfig whose serverless variants AWS would refuse."""
    serverless = [i for i, v in enumerate(variants) if isinstance(v, dict) and "ServerlessConfig" in v]
    if not serverless:
        return
    if len(variants) > 1:
        raise ValidationException("Serverless endpoints support a single production variant; this config has "
                                  f"{len(variants)}: put each model on its own serverless endpoint")
    for index in serverless:
        _check_variant(variants[index], index + 1)


def _check_variant(variant: dict[str, Any], position: int) -> None:
    name = variant.get("VariantName", position)
    if "InstanceType" in variant:
        instance_type = str(variant["InstanceType"])
        if _has_gpu(instance_type):
            raise ValidationException(f"Serverless Inference does not support GPUs: variant {name!r} asks for "
                                      f"{instance_type}. Remove InstanceType to run it serverless (on CPU), or "
                                      "remove ServerlessConfig to run it on the GPU instance")
        raise ValidationException(f"Variant {name!r} specifies both InstanceType and ServerlessConfig; a "
                                  "production variant must specify exactly one of them")
    if "AcceleratorType" in variant:
        raise ValidationException(f"Serverless Inference does not support GPUs: variant {name!r} asks for the "
                                  f"accelerator {variant['AcceleratorType']}; remove AcceleratorType")
    config = variant["ServerlessConfig"]
    if not isinstance(config, dict):
        raise ValidationException(f"ServerlessConfig of variant {name!r} must be an object")
    path = f"productionVariants.{position}.member.serverlessConfig"
    memory = _whole(config, "MemorySizeInMB", path, required=True) or 0
    if memory not in MEMORY_SIZES_MB:
        raise _constraint(memory, f"{path}.memorySizeInMB",
                          f"Member must satisfy enum value set: [{', '.join(map(str, MEMORY_SIZES_MB))}]")
    most = _whole(config, "MaxConcurrency", path, required=True) or 0
    _in_range(most, f"{path}.maxConcurrency")
    provisioned = _whole(config, "ProvisionedConcurrency", path, required=False)
    if provisioned is not None:
        _in_range(provisioned, f"{path}.provisionedConcurrency")
        if provisioned > most:
            raise ValidationException(f"ProvisionedConcurrency ({provisioned}) of variant {name!r} must be less "
                                      f"than or equal to MaxConcurrency ({most})")


def _whole(config: dict[str, Any], member: str, path: str, required: bool) -> int | None:
    raw = config.get(member)
    if raw is None:
        if required:
            raise ValidationException(f"1 validation error detected: Value null at "
                                      f"'{path}.{member[0].lower()}{member[1:]}' failed to satisfy constraint: "
                                      "Member must not be null")
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValidationException(f"{member} must be a whole number, got {raw!r}")
    return raw


def _in_range(value: int | None, path: str) -> None:
    if value is not None and value < 1:
        raise _constraint(value, path, "Member must have value greater than or equal to 1")
    if value is not None and value > MAX_CONCURRENCY:
        raise _constraint(value, path, f"Member must have value less than or equal to {MAX_CONCURRENCY}")


def _constraint(value: object, path: str, rule: str) -> ValidationException:
    return ValidationException(f"1 validation error detected: Value '{value}' at '{path}' failed to satisfy "
                               f"constraint: {rule}")


def _has_gpu(instance_type: str) -> bool:
    try:
        return lookup(instance_type).has_gpu
    except Exception:  # noqa: BLE001 - an unknown type is refused as "both", with the type named
        return False


def model_size_bytes(model_dir: Path) -> int:
    """What the weights take: every file of the unpacked artifact outside code/."""
    code = model_dir / CODE_FOLDER
    return sum(p.stat().st_size for p in model_dir.rglob("*")
               if p.is_file() and not p.is_symlink() and code not in p.parents)


def check_model_fits(model_dir: Path, config: ServerlessConfig) -> None:
    """Raise MemoryError, worded as the FailureReason a serverless endpoint gets, when the model cannot fit."""
    size = model_size_bytes(model_dir)
    if size > config.memory_size_mb * MEBIBYTE:
        raise MemoryError(
            f"Memory size is insufficient to load the model: its unpacked weights take {size / MEBIBYTE:.0f} MB, "
            f"more than the MemorySizeInMB of {config.memory_size_mb} MB that the serverless endpoint has. "
            f"Choose a larger MemorySizeInMB (up to {MEMORY_SIZES_MB[-1]}) or a smaller model")
