"""The training loop's target and evaluation loss: the target follows the base model's prediction type, and the
evaluation loss, computed in training-sized batches, equals the one-batch number."""

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


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_the_target_is_what_the_base_model_predicts(prediction_type: str) -> None:
    """SD1.5 predicts the noise; SD2.x and tiny-sd the velocity sqrt(a)*noise - sqrt(1-a)*latents (Salimans
    and Ho, 2022), with a the cumulative alpha at the timestep. Any other type is refused by name."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              prediction_type=prediction_type)
    generator = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)
    timesteps = torch.tensor([10, 900])
    if prediction_type == "sample":
        with pytest.raises(ValueError, match="'sample'.*epsilon or v_prediction"):
            training_loop.denoising_target(scheduler, latents, noise, timesteps)
        return
    target = training_loop.denoising_target(scheduler, latents, noise, timesteps)
    alpha = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2, dim=0)[timesteps]
    alpha = alpha[:, None, None, None]
    velocity = alpha.sqrt() * noise - (1 - alpha).sqrt() * latents
    expected = noise if prediction_type == "epsilon" else velocity
    torch.testing.assert_close(target, expected)
    assert not torch.allclose(noise, velocity, atol=0.1)  # the two types really differ at these timesteps
