"""The ``SM_*`` environment the script reads, and the device and precision it allows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.script_loader import sibling

training_environment = sibling("training_environment")
HyperparameterError = sibling("training_errors").HyperparameterError


def test_a_channel_with_another_name_is_the_training_channel(tmp_path: Path) -> None:
    env = {"SM_CHANNELS": '["base", "train"]', "SM_CHANNEL_TRAIN": str(tmp_path), "SM_CHANNEL_BASE": "/b",
           "SM_NUM_GPUS": "0"}
    settings = training_environment.TrainingEnvironment.from_environ(env)
    assert (settings.training_channel, settings.base_channel, settings.num_gpus) == (tmp_path, Path("/b"), 0)


def test_the_cpu_trains_in_fp32_and_refuses_half_precision() -> None:
    cpu = torch.device("cpu")
    assert training_environment.resolve_device(0) == cpu
    assert training_environment.resolve_precision(None, cpu) == "no"
    with pytest.raises(HyperparameterError, match="mixed_precision=bf16 needs a CUDA GPU"):
        training_environment.resolve_precision("bf16", cpu)
