"""What the job leaves besides the adapter: the base model reference in the model dir, the metrics in
the output data dir, and, when it fails, the one-line reason in ``$SM_OUTPUT_DIR/failure``.

The base reference travels inside model.tar.gz, so the deploy side serves the adapter on the base it was
trained on. The failure file is what the SageMaker training toolkit leaves and SageMaker reports as the
job's FailureReason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch
from hyperparameters import Hyperparameters
from lora_adapter import TARGET_MODULES
from training_loop import TrainingResult

logger = logging.getLogger(__name__)

# A copy of localmaker.spec.names.LORA_BASE_MODEL_FILE, held equal by a test.
BASE_MODEL_FILE = "localmaker_base_model.json"
METRICS_FILE = "training_metrics.json"
FAILURE_REASON_LIMIT = 1024  # SageMaker's FailureReason holds at most 1024 characters


def write_base_reference(model_dir: Path, hp: Hyperparameters) -> Path:
    """The base the LoRA belongs to travels with the artifact, so the deploy side serves the right one."""
    path = model_dir / BASE_MODEL_FILE
    reference = {
        "base_model": hp.base_model,
        "lora": {"rank": hp.rank, "alpha": hp.rank, "target_modules": list(TARGET_MODULES)},
        "resolution": hp.resolution,
    }
    path.write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")
    return path


def write_metrics(output_data_dir: Path, hp: Hyperparameters, result: TrainingResult, images: int) -> Path:
    """The losses, the evaluation before and after, and the settings, as JSON in ``output.tar.gz``."""
    output_data_dir.mkdir(parents=True, exist_ok=True)
    path = output_data_dir / METRICS_FILE
    metrics = {
        "steps": len(result.losses),
        "seconds": round(result.seconds, 3),
        "first_loss": result.losses[0],
        "last_loss": result.losses[-1],
        "losses": result.losses,
        "eval_loss_before": result.eval_loss_before,
        "eval_loss_after": result.eval_loss_after,
        "images": images,
        "device": result.device,
        "mixed_precision": result.mixed_precision,
        "hyperparameters": asdict(hp),
    }
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return path


def failure_reason(exc: BaseException) -> str:
    """One paragraph, no traceback: the exception's type and message, as FailureReason shows it."""
    message = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        message += ". Lower train_batch_size or resolution, or use a GPU with more memory"
    return f"{type(exc).__name__}: {message}"[:FAILURE_REASON_LIMIT]


def write_failure(output_dir: str | None, reason: str) -> None:
    """``$SM_OUTPUT_DIR/failure``, the file the SageMaker training toolkit leaves for FailureReason."""
    if not output_dir:
        return
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "failure").write_text(reason + "\n", encoding="utf-8")
    except OSError:
        logger.exception("could not write the failure file in %s", output_dir)
