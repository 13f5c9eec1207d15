"""A real training run of train_lora.py, as a SageMaker training job runs it, and what it leaves.

One run on the synthetic neon-city set (tiny-sd, 64x64) is shared by the tests that inspect its outputs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.training.job_runner import Job, make_job

PROGRESS = re.compile(r"^\[localmaker:progress\] step=(\d+) total=(\d+) loss=(-?\d+\.\d{6})$")
# Settings that really train on two CPU cores in ~10 s: lr 1e-2 moves the tiny random UNet's rank-4
# LoRA clearly within 120 steps (1e-3 needs several times more steps for the same drop).
TRAIN_ARGS = ["--base_model", '"tiny-sd"', "--resolution", "64", "--max_train_steps", "120",
              "--learning_rate", "0.01", "--rank", "4", "--train_batch_size", "2", "--seed", "0",
              "--mixed_precision", '"no"',
              # what the SageMaker SDK adds to every job; the script must ignore it
              "--sagemaker_program", '"train_lora.py"', "--sagemaker_region", '"us-east-1"']


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, localmaker_home: Path, tiny_sd_dir: Path,
            style_set: Path) -> Job:
    job = make_job(tmp_path_factory.mktemp("job"), localmaker_home, style_set)
    result = job.run(TRAIN_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return job


def test_training_lowers_the_loss(trained: Job) -> None:
    metrics = trained.metrics()
    losses = np.array(metrics["losses"])
    assert metrics["steps"] == len(losses) == 120 and metrics["images"] == 12
    assert metrics["first_loss"] == losses[0] and metrics["last_loss"] == losses[-1]
    assert metrics["device"] == "cpu" and metrics["mixed_precision"] == "no" and metrics["seconds"] > 0
    assert np.isfinite(losses).all()
    # A single step's loss swings with its random timesteps and noise more than training moves it, so
    # the script also measures the loss on every training image at fixed timesteps and noise, before
    # and after training. That one comparable number must fall by a clear margin.
    before, after = metrics["eval_loss_before"], metrics["eval_loss_after"]
    print(f"evaluation loss before {before:.4f}, after {after:.4f}")
    assert after < before, (before, after)


def test_progress_lines_parse_and_end_at_the_last_step(trained: Job) -> None:
    assert trained.result is not None
    parsed = [PROGRESS.match(line) for line in trained.result.stdout.splitlines()]
    steps = [(int(m[1]), int(m[2]), float(m[3])) for m in parsed if m]
    assert len(steps) == len(parsed), "stdout holds only progress lines; logs go to stderr"
    assert [s for s, _, _ in steps] == list(range(1, 121))
    assert {total for _, total, _ in steps} == {120}
    assert [loss for _, _, loss in steps] == pytest.approx(trained.metrics()["losses"], abs=5e-7)
    assert "first loss" in trained.result.stderr and "last loss" in trained.result.stderr


def test_the_log_holds_the_scripts_lines_not_the_libraries_bars_and_notices(trained: Job) -> None:
    assert trained.result is not None
    log = trained.result.stderr
    assert "Loading weights" not in log and "it/s]" not in log  # transformers' and diffusers' loading bars
    assert "torchvision" not in log  # transformers' notice, printed when the pipeline is saved
    assert "training_loop: step 1/120" in log


def test_lora_loads_in_a_stock_pipeline_and_scale_zero_is_the_base(trained: Job, tiny_sd_dir: Path) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir))
    pipe.set_progress_bar_config(disable=True)

    def draw(**kwargs: object) -> np.ndarray:
        return pipe("futuristic city at night, neon lights", num_inference_steps=3, height=64, width=64,
                    generator=torch.Generator().manual_seed(7), output_type="np", **kwargs).images[0]

    base = draw()
    pipe.load_lora_weights(str(trained.model_dir))
    adapted = draw()
    switched_off = draw(cross_attention_kwargs={"scale": 0.0})
    assert np.abs(adapted - base).max() > 1e-3, "the trained LoRA should change the image"
    np.testing.assert_array_equal(switched_off, base)


def test_model_dir_carries_the_base_reference(trained: Job) -> None:
    assert sorted(p.name for p in trained.model_dir.iterdir()) == [
        "localmaker_base_model.json", "pytorch_lora_weights.safetensors"]
    reference = json.loads((trained.model_dir / "localmaker_base_model.json").read_text(encoding="utf-8"))
    assert reference == {
        "base_model": "tiny-sd",  # as given, JSON quotes stripped; the deploy side resolves it again
        "lora": {"rank": 4, "alpha": 4, "target_modules": ["to_k", "to_q", "to_v", "to_out.0"]},
        "resolution": 64,
    }
    weights = load_file(trained.model_dir / "pytorch_lora_weights.safetensors")
    assert weights and all(name.startswith("unet.") for name in weights)
    assert all(t.dtype == torch.float32 for t in weights.values())


def test_loss_curve_is_a_png_with_both_lines(trained: Job) -> None:
    with Image.open(trained.data_dir / "loss_curve.png") as image:
        assert image.format == "PNG" and image.size == (640, 360)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    colours = {tuple(p) for p in pixels}
    assert (200, 40, 40) in colours and (150, 185, 230) in colours  # moving average and per-step loss
    assert not (trained.output_dir / "failure").exists()


def test_same_seed_gives_identical_weights_from_the_base_channel_or_by_name(
        tmp_path: Path, localmaker_home: Path, tiny_sd_dir: Path, style_set: Path) -> None:
    short = ["--base_model", "tiny-sd", "--resolution", "64", "--max_train_steps", "4", "--learning_rate",
             "0.01", "--train_batch_size", "2", "--seed", "11"]
    by_channel = make_job(tmp_path / "a", localmaker_home, style_set, SM_CHANNEL_BASE=str(tiny_sd_dir))
    by_name = make_job(tmp_path / "b", localmaker_home, style_set)
    for job in (by_channel, by_name):
        result = job.run(short)
        assert result.returncode == 0, result.stderr[-3000:]
    first = load_file(by_channel.model_dir / "pytorch_lora_weights.safetensors")
    second = load_file(by_name.model_dir / "pytorch_lora_weights.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(t.abs().sum() > 0 for k, t in first.items() if "lora_B" in k or "lora.up" in k)
    assert by_channel.metrics()["losses"] == by_name.metrics()["losses"]
