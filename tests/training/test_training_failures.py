"""train_lora.py's failures: a wrong input fails fast with exit code 2, a failure while training exits 1,
and either way ``$SM_OUTPUT_DIR/failure`` holds the one-line reason, without a traceback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from localmaker.model.builders.style_dataset import make_style_dataset
from tests.training.job_runner import make_job

FAST_FAILURE_S = 10.0


def _broken_png_set(folder: Path) -> Path:
    make_style_dataset(folder, count=2, size=64)
    (folder / "broken.png").write_text("this is not a PNG", encoding="utf-8")
    (folder / "broken.txt").write_text("a caption for a broken file", encoding="utf-8")
    return folder


def _uncaptioned_set(folder: Path) -> Path:
    make_style_dataset(folder, count=2, size=64)
    Image.new("RGB", (64, 64), (10, 0, 30)).save(folder / "stray.png")
    return folder


def _empty_set(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


FAILURES: dict[str, tuple[Any, dict[str, str], list[str]]] = {
    "missing channel": (None, {}, ["SM_CHANNEL_TRAINING is not set", "'training' channel"]),
    "empty folder": (_empty_set, {}, ["is empty"]),
    "non-image": (_broken_png_set, {}, ["broken.png", "not a readable image"]),
    "no caption": (_uncaptioned_set, {}, ["stray.png", "no caption", "stray.txt", "metadata.jsonl"]),
    "rank 0": ("style", {"--rank": "0"}, ["HyperparameterError", "rank must be at least 1, got 0"]),
    "resolution 65": ("style", {"--resolution": "65"}, ["resolution must be a multiple of 8", "65"]),
    "fp16 on cpu": ("style", {"--mixed_precision": "fp16"}, ["mixed_precision=fp16 needs a CUDA GPU",
                                                               "--mixed_precision no"]),
    "unknown hyperparameter": ("style", {"--epochs": "3"}, ["unknown hyperparameter epochs", "max_train_steps"]),
    # torch takes 64-bit seeds; 2**64 once passed validation and failed (exit 1) after the model loaded
    "seed 2**64": ("style", {"--seed": str(2**64)}, ["HyperparameterError",
                                                    f"seed must be at most {2**64 - 1}, got {2**64}"]),
    "unknown base model": ("style", {"--base_model": "no-such-model"}, ["BaseModelError", "'no-such-model'",
                                                                         "tiny-sd"]),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_bad_input_fails_fast_with_a_failure_file(case: str, tmp_path: Path, localmaker_home: Path,
                                                  style_set: Path) -> None:
    make_channel, extra_args, expected = FAILURES[case]
    if make_channel is None:
        channel = None
    elif make_channel == "style":
        channel = style_set
    else:
        assert callable(make_channel)
        channel = make_channel(tmp_path / "channel")
    job = make_job(tmp_path / "job", localmaker_home, channel)
    settings = {"--base_model": "tiny-sd", "--resolution": "64", **extra_args}
    args = [token for pair in settings.items() for token in pair]
    started = time.perf_counter()
    result = job.run(args, timeout=60)
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stderr[-2000:]
    reason = job.failure()
    for text in expected:
        assert text in reason, (text, reason)
    assert "Traceback" not in reason and len(reason.strip().splitlines()) == 1
    assert not (job.model_dir / "pytorch_lora_weights.safetensors").exists()
    assert elapsed < FAST_FAILURE_S, f"{case} took {elapsed:.1f} s: it should fail before loading a model"


def test_a_base_folder_that_is_no_pipeline_is_reported(tmp_path: Path, localmaker_home: Path,
                                                       style_set: Path) -> None:
    fake_base = tmp_path / "fake-base"
    fake_base.mkdir()
    (fake_base / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}', encoding="utf-8")
    job = make_job(tmp_path / "job", localmaker_home, style_set, SM_CHANNEL_BASE=str(fake_base))
    result = job.run(["--base_model", "tiny-sd", "--resolution", "64"], timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "BaseModelError: cannot load base_model 'tiny-sd'" in job.failure()


def test_a_diverging_run_exits_1_with_the_reason(tmp_path: Path, localmaker_home: Path, tiny_sd_dir: Path,
                                                 style_set: Path) -> None:
    """Not an input error but a failure while training: exit 1, the reason in the failure file, the
    traceback only in the log."""
    job = make_job(tmp_path / "job", localmaker_home, style_set)
    result = job.run(["--base_model", "tiny-sd", "--resolution", "64", "--max_train_steps", "5",
                      "--learning_rate", "1e30"], timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    reason = job.failure()
    assert reason.startswith("FloatingPointError: the loss became") and "lower learning_rate" in reason
    assert "Traceback" in result.stderr and "Traceback" not in reason
