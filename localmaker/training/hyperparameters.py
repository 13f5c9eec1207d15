"""The script's hyperparameters, parsed from ``--key value`` arguments (or ``SM_HPS``) and validated.

Every value is checked before any model loads, so a wrong one fails the job in seconds with a message
naming the fix rather than minutes later with a traceback.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from training_errors import HyperparameterError

# torch.manual_seed takes at most 64 bits; a larger seed would fail only after the base model loaded.
MAX_SEED = 2**64 - 1


@dataclass(frozen=True)
class Hyperparameters:
    base_model: str
    rank: int = 4
    learning_rate: float = 1e-4
    max_train_steps: int = 200
    train_batch_size: int = 1
    resolution: int = 512
    gradient_accumulation_steps: int = 1
    seed: int = 0
    mixed_precision: str | None = None  # None: bf16 (or fp16) on CUDA, "no" on the CPU
    center_crop: bool = True
    random_flip: bool = False
    max_grad_norm: float = 1.0


def _integer(name: str, raw: str, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise HyperparameterError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise HyperparameterError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise HyperparameterError(f"{name} must be at most {maximum}, got {value}")
    return value


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise HyperparameterError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise HyperparameterError(f"{name} must be a positive number, got {raw!r}")
    return value


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise HyperparameterError(f"{name} must be true or false, got {raw!r}")


def _resolution(name: str, raw: str) -> int:
    value = _integer(name, raw)
    if not 64 <= value <= 1024 or value % 8:
        raise HyperparameterError(f"{name} must be a multiple of 8 from 64 to 1024, got {value}")
    return value


def _mixed_precision(name: str, raw: str) -> str:
    if raw not in ("no", "fp16", "bf16"):
        raise HyperparameterError(f"{name} must be one of no, fp16, bf16, got {raw!r}")
    return raw


def _base_model(name: str, raw: str) -> str:
    if not raw.strip():
        raise HyperparameterError(f"{name} must name a Stable Diffusion pipeline, got an empty string")
    return raw.strip()


# Name -> converter from the command-line string; the names and defaults are the dataclass's.
_CONVERTERS: dict[str, Callable[[str, str], Any]] = {
    "base_model": _base_model,
    "rank": lambda n, r: _integer(n, r, 1),
    "learning_rate": _positive_float,
    "max_train_steps": lambda n, r: _integer(n, r, 1),
    "train_batch_size": lambda n, r: _integer(n, r, 1),
    "resolution": _resolution,
    "gradient_accumulation_steps": lambda n, r: _integer(n, r, 1),
    "seed": lambda n, r: _integer(n, r, 0, MAX_SEED),
    "mixed_precision": _mixed_precision,
    "center_crop": _boolean,
    "random_flip": _boolean,
    "max_grad_norm": _positive_float,
}


def _decode(raw: str) -> str:
    """The SageMaker SDK JSON-encodes values, so ``"tiny-sd"`` (quotes included) means ``tiny-sd``."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text


def _split_arguments(argv: list[str]) -> dict[str, str]:
    """``--key value`` and ``--key=value`` pairs, keys with ``-`` read as ``_``."""
    pairs: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or len(token) == 2:
            raise HyperparameterError(f"expected --name value pairs, got {token!r}")
        if "=" in token:
            key, value = token[2:].split("=", 1)
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            key, value = token[2:], argv[i + 1]
            i += 2
        else:
            raise HyperparameterError(f"hyperparameter {token} has no value")
        key = key.replace("-", "_")
        if key in pairs:
            raise HyperparameterError(f"hyperparameter {key} is given twice")
        pairs[key] = _decode(value)
    return pairs


def parse_hyperparameters(argv: list[str], sm_hps: str | None = None) -> Hyperparameters:
    """Validate every hyperparameter, failing on the first bad one with a message naming the fix.

    The SDK's own ``sagemaker_*`` keys are ignored. When no arguments are given, ``SM_HPS`` (the same
    values as JSON) is read instead, so the script also runs under launchers that only set the env.
    """
    pairs = _split_arguments(argv)
    if not pairs and sm_hps:
        try:
            loaded = json.loads(sm_hps)
        except ValueError as exc:
            raise HyperparameterError(f"SM_HPS is not valid JSON: {exc}") from None
        pairs = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in loaded.items()}
    pairs = {k: v for k, v in pairs.items() if not k.startswith("sagemaker_")}
    unknown = sorted(set(pairs) - set(_CONVERTERS))
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"this script accepts {', '.join(_CONVERTERS)}"
        )
    if "base_model" not in pairs:
        raise HyperparameterError(
            "base_model is required: a Stable Diffusion 1.x pipeline folder (model_index.json), a localmaker "
            "source such as tiny-sd or sd15, or a Hugging Face hub id"
        )
    return Hyperparameters(**{key: _CONVERTERS[key](key, value) for key, value in pairs.items()})
