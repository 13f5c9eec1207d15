"""train_lora.py, run the way a SageMaker training job runs it: a fresh process, ``--key value``
hyperparameters, and the ``SM_*`` environment pointing at a channel and output folders.

One real training run on the synthetic neon-city set (tiny-sd, 64x64) is shared by the tests that
inspect its outputs; every failure case runs its own short process and must fail before a model loads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from localmaker.model import train_lora
from localmaker.model.style_dataset import make_style_dataset
from localmaker.model.train_lora import (
    HyperparameterError,
    TrainingDataError,
    TrainingEnvironment,
    moving_average,
    parse_hyperparameters,
    scan_training_data,
)

SCRIPT = Path(train_lora.__file__)
PROGRESS = re.compile(r"^\[localmaker:progress\] step=(\d+) total=(\d+) loss=(-?\d+\.\d{6})$")
# Settings that really train on two CPU cores in ~10 s: lr 1e-2 moves the tiny random UNet's rank-4
# LoRA clearly within 120 steps (1e-3 needs several times more steps for the same drop).
TRAIN_ARGS = ["--base_model", '"tiny-sd"', "--resolution", "64", "--max_train_steps", "120",
              "--learning_rate", "0.01", "--rank", "4", "--train_batch_size", "2", "--seed", "0",
              "--mixed_precision", '"no"',
              # what the SageMaker SDK adds to every job; the script must ignore it
              "--sagemaker_program", '"train_lora.py"', "--sagemaker_region", '"us-east-1"']
FAST_FAILURE_S = 10.0


@dataclass
class Job:
    root: Path
    env: dict[str, str]
    result: subprocess.CompletedProcess[str] | None = None

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def data_dir(self) -> Path:
        return self.root / "output" / "data"

    def run(self, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
        self.result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=self.root, env=self.env,
                                     capture_output=True, text=True, timeout=timeout)
        return self.result

    def failure(self) -> str:
        return (self.output_dir / "failure").read_text(encoding="utf-8")


def make_job(root: Path, home: Path, channel: Path | None, **extra_env: str) -> Job:
    """A job folder and the environment the SageMaker training toolkit would give the script."""
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", LOCALMAKER_HOME=str(home), SM_NUM_GPUS="0",
               SM_MODEL_DIR=str(root / "model"), SM_OUTPUT_DIR=str(root / "output"),
               SM_OUTPUT_DATA_DIR=str(root / "output" / "data"), SM_CURRENT_HOST="algo-1",
               SM_CHANNELS=json.dumps(["training"] if channel else []))
    if channel is not None:
        env["SM_CHANNEL_TRAINING"] = str(channel)
    env.update(extra_env)
    return Job(root=root, env=env)


@pytest.fixture(scope="module")
def style_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_style_dataset(tmp_path_factory.mktemp("neon") / "training", count=12, size=64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, localmaker_home: Path, tiny_sd_dir: Path,
            style_set: Path) -> Job:
    job = make_job(tmp_path_factory.mktemp("job"), localmaker_home, style_set)
    result = job.run(TRAIN_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return job


def _metrics(job: Job) -> dict:
    return json.loads((job.data_dir / "training_metrics.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------
# A real training run
# ---------------------------------------------------------------------------------------------------


def test_training_lowers_the_loss(trained: Job) -> None:
    metrics = _metrics(trained)
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
    assert [loss for _, _, loss in steps] == pytest.approx(_metrics(trained)["losses"], abs=5e-7)
    assert "first loss" in trained.result.stderr and "last loss" in trained.result.stderr


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
    assert _metrics(by_channel)["losses"] == _metrics(by_name)["losses"]


# ---------------------------------------------------------------------------------------------------
# Failures: fast, exit code 2, and $SM_OUTPUT_DIR/failure says what to fix
# ---------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------
# In-process units: argument decoding, the environment, captions
# ---------------------------------------------------------------------------------------------------


def test_hyperparameters_accept_sdk_json_encoding_and_ignore_sagemaker_keys() -> None:
    hp = parse_hyperparameters(["--base_model", '"tiny-sd"', "--learning_rate", "0.0001", "--rank=8",
                                "--random-flip", "true", "--sagemaker_job_name", '"job-1"'])
    assert (hp.base_model, hp.learning_rate, hp.rank, hp.random_flip) == ("tiny-sd", 1e-4, 8, True)
    assert (hp.max_train_steps, hp.train_batch_size, hp.resolution, hp.mixed_precision) == (200, 1, 512, None)
    from_env = parse_hyperparameters([], sm_hps='{"base_model": "tiny-sd", "rank": 2, "center_crop": false}')
    assert (from_env.rank, from_env.center_crop) == (2, False)


@pytest.mark.parametrize("args, message", [
    (["--base_model", "x", "--learning_rate", "0"], "learning_rate must be a positive number"),
    (["--base_model", "x", "--max_train_steps", "2.5"], "max_train_steps must be an integer"),
    (["--base_model", "x", "--resolution", "2048"], "from 64 to 1024"),
    (["--base_model", "x", "--mixed_precision", "fp8"], "one of no, fp16, bf16"),
    (["--base_model", "x", "--rank"], "--rank has no value"),
    (["--rank", "4"], "base_model is required"),
    (["--base_model", "x", "--seed", "-1"], "seed must be at least 0"),
    (["--base_model", "x", "--seed", str(2**64)], f"seed must be at most {2**64 - 1}"),
])
def test_bad_hyperparameters_name_the_fix(args: list[str], message: str) -> None:
    with pytest.raises(HyperparameterError, match=message):
        parse_hyperparameters(args)


def test_a_channel_with_another_name_is_the_training_channel(tmp_path: Path) -> None:
    env = {"SM_CHANNELS": '["base", "train"]', "SM_CHANNEL_TRAIN": str(tmp_path), "SM_CHANNEL_BASE": "/b",
           "SM_NUM_GPUS": "0"}
    settings = TrainingEnvironment.from_environ(env)
    assert (settings.training_channel, settings.base_channel, settings.num_gpus) == (tmp_path, Path("/b"), 0)


def test_captions_come_from_metadata_or_sidecar_text(tmp_path: Path) -> None:
    make_style_dataset(tmp_path, count=2, size=32)
    Image.new("RGB", (40, 32), (0, 200, 255)).save(tmp_path / "extra.jpg")
    (tmp_path / "extra.txt").write_text("  a cyan sign  \n", encoding="utf-8")
    examples = scan_training_data(tmp_path)
    assert [e.image.name for e in examples] == ["extra.jpg", "neon_city_000.png", "neon_city_001.png"]
    assert examples[0].caption == "a cyan sign" and "neon" in examples[1].caption


def test_a_metadata_line_naming_a_missing_file_is_reported(tmp_path: Path) -> None:
    make_style_dataset(tmp_path, count=1, size=32)
    with (tmp_path / "metadata.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"file_name": "gone.png", "text": "neon"}\n')
    with pytest.raises(TrainingDataError, match=r"metadata.jsonl line 2 names 'gone.png'"):
        scan_training_data(tmp_path)


def test_the_largest_seed_is_accepted_and_torch_takes_it() -> None:
    hp = parse_hyperparameters(["--base_model", "x", "--seed", str(2**64 - 1)])
    assert hp.seed == 2**64 - 1
    torch.Generator().manual_seed(hp.seed)  # what train() does with it


@pytest.mark.parametrize("bad_file", ["metadata.jsonl", "neon_city_001.txt"])
def test_a_caption_file_that_is_not_utf8_is_reported(bad_file: str, tmp_path: Path) -> None:
    make_style_dataset(tmp_path, count=2, size=32)
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "neon_city_000.png", "text": "neon"}\n', encoding="utf-8")
    (tmp_path / "neon_city_001.txt").write_text("a neon sign\n", encoding="utf-8")
    # A Windows editor's Latin-1 "café": byte 0xe9 is not valid UTF-8 here.
    (tmp_path / bad_file).write_bytes((tmp_path / bad_file).read_bytes().replace(b"neon", "café".encode("latin-1")))
    with pytest.raises(TrainingDataError, match=rf"{re.escape(bad_file)} in the training channel is not UTF-8 text "
                                                r"\(byte 0xe9 at offset \d+\); save it as UTF-8"):
        scan_training_data(tmp_path)


def test_evaluation_runs_in_training_batches_and_matches_one_batch(tiny_sd_dir: Path, tmp_path: Path) -> None:
    """The evaluation loss over the whole set, chunked by train_batch_size, equals the one-batch number,
    and neither the VAE nor the UNet ever sees more than train_batch_size images at once."""
    examples = scan_training_data(make_style_dataset(tmp_path / "set", count=5, size=64))
    components = train_lora.load_components(str(tiny_sd_dir), "tiny-sd")
    tokenizer = components["tokenizer"]
    input_ids = tokenizer([e.caption for e in examples], max_length=tokenizer.model_max_length,
                          padding="max_length", truncation=True, return_tensors="pt").input_ids
    seen: list[int] = []  # the batch size of every VAE-encoder and UNet call

    def record(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.append(len(args[0]))

    hooks = [components["unet"].register_forward_pre_hook(record),
             components["vae"].encoder.register_forward_pre_hook(record)]
    try:
        def loss(batch_size: int) -> float:
            seen.clear()
            return train_lora.evaluation_loss(examples, components, input_ids, 64, torch.device("cpu"),
                                              torch.float32, batch_size)

        whole = loss(len(examples))
        assert max(seen) == len(examples)
        chunked = loss(2)  # chunks of 2, 2 and 1: an uneven last chunk must weigh less
        assert seen and max(seen) == 2 and min(seen) == 1
    finally:
        for hook in hooks:
            hook.remove()
    assert chunked == pytest.approx(whole, rel=1e-5)


def test_moving_average_is_a_trailing_mean() -> None:
    assert moving_average([4.0, 2.0, 0.0, 2.0], 2) == [4.0, 3.0, 1.0, 1.0]
