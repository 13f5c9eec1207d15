"""The training loop's evaluation loss: computed in training-sized batches, equal to the one-batch number."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from localmaker.model.builders.style_dataset import make_style_dataset
from tests.training.script_loader import sibling

base_pipeline = sibling("base_pipeline")
training_data = sibling("training_data")
training_loop = sibling("training_loop")


def test_evaluation_runs_in_training_batches_and_matches_one_batch(tiny_sd_dir: Path, tmp_path: Path) -> None:
    """The evaluation loss over the whole set, chunked by train_batch_size, equals the one-batch number,
    and neither the VAE nor the UNet ever sees more than train_batch_size images at once."""
    examples = training_data.scan_training_data(make_style_dataset(tmp_path / "set", count=5, size=64))
    components = base_pipeline.load_components(str(tiny_sd_dir), "tiny-sd")
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
            result: float = training_loop.evaluation_loss(examples, components, input_ids, 64, torch.device("cpu"),
                                                          torch.float32, batch_size)
            return result

        whole = loss(len(examples))
        assert max(seen) == len(examples)
        chunked = loss(2)  # chunks of 2, 2 and 1: an uneven last chunk must weigh less
        assert seen and max(seen) == 2 and min(seen) == 1
    finally:
        for hook in hooks:
            hook.remove()
    assert chunked == pytest.approx(whole, rel=1e-5)
