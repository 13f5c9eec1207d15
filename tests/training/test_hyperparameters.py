"""Hyperparameters as the SageMaker SDK passes them (JSON-encoded ``--key value``, or ``SM_HPS``), and
the message a bad one fails with."""

from __future__ import annotations

import pytest
import torch

from tests.training.script_loader import sibling

hyperparameters = sibling("hyperparameters")
HyperparameterError = sibling("training_errors").HyperparameterError


def test_hyperparameters_accept_sdk_json_encoding_and_ignore_sagemaker_keys() -> None:
    hp = hyperparameters.parse_hyperparameters(["--base_model", '"tiny-sd"', "--learning_rate", "0.0001",
                                                "--rank=8", "--random-flip", "true", "--sagemaker_job_name",
                                                '"job-1"'])
    assert (hp.base_model, hp.learning_rate, hp.rank, hp.random_flip) == ("tiny-sd", 1e-4, 8, True)
    assert (hp.max_train_steps, hp.train_batch_size, hp.resolution, hp.mixed_precision) == (200, 1, 512, None)
    from_env = hyperparameters.parse_hyperparameters(
        [], sm_hps='{"base_model": "tiny-sd", "rank": 2, "center_crop": false}')
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
        hyperparameters.parse_hyperparameters(args)


def test_the_largest_seed_is_accepted_and_torch_takes_it() -> None:
    hp = hyperparameters.parse_hyperparameters(["--base_model", "x", "--seed", str(2**64 - 1)])
    assert hp.seed == 2**64 - 1
    torch.Generator().manual_seed(hp.seed)  # what train() does with it
