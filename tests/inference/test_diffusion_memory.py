"""Out of GPU memory is a 503 the endpoint survives; the pixel budget refuses what cannot fit up front."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest
import torch

from tests.inference.handler_loader import sibling, text_to_image

errors = sibling("serving_errors")
memory = sibling("diffusion_memory")


@contextmanager
def _unet_fails_once(service: Any, make_error: Callable[[], BaseException]) -> Iterator[dict[str, int]]:
    """A forward pre-hook on the loaded UNet that raises on its first call, as a real allocation failure would."""
    calls = {"raised": 0}

    def fail_once(module: torch.nn.Module, args: Any) -> None:
        if not calls["raised"]:
            calls["raised"] += 1
            raise make_error()

    handle = service.model.pipe.unet.register_forward_pre_hook(fail_once)
    try:
        yield calls
    finally:
        handle.remove()


@pytest.mark.parametrize(
    "make_error",
    [
        lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 22.06 GiB total)"),
        lambda: RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
    ],
    ids=["OutOfMemoryError", "RuntimeError"],
)
def test_out_of_memory_is_a_503_and_the_next_request_succeeds(
    handler: ModuleType, sd_service: Any, make_error: Callable[[], BaseException]
) -> None:
    before, _ = text_to_image(handler, sd_service, accept="image/png", seed=12)
    hooks_before = len(sd_service.model.pipe.unet._forward_pre_hooks)
    with _unet_fails_once(sd_service, make_error) as calls:
        with pytest.raises(errors.GenerationOutOfMemory) as info:
            text_to_image(handler, sd_service, seed=12, num_images_per_prompt=2, height=72, width=64)
        assert calls["raised"] == 1
        err = info.value
        assert isinstance(err, errors.InferenceError) and err.status_code == 503
        assert "ran out of memory generating 2 image(s) of 64x72 with 2 steps" in err.message
        assert "out of memory" in err.message.split("(", 1)[1]  # the allocator's own first line is quoted
        assert '"parameters.num_images_per_prompt"' in err.message and '"height"' in err.message
        assert "\n" not in err.message
        after, _ = text_to_image(handler, sd_service, accept="image/png", seed=12)
    assert after == before
    assert len(sd_service.model.pipe.unet._forward_pre_hooks) == hooks_before  # the step timer's hook is gone


def test_other_runtime_errors_are_not_disguised(handler: ModuleType, sd_service: Any) -> None:
    shape_error = RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    with (
        _unet_fails_once(sd_service, lambda: shape_error),
        pytest.raises(RuntimeError, match="shapes cannot be multiplied") as info,
    ):
        text_to_image(handler, sd_service, num_inference_steps=1)
    assert not isinstance(info.value, errors.InferenceError)


def test_releasing_memory_is_safe_without_cuda() -> None:
    memory.release_accelerator_memory()
    assert memory.is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert memory.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not memory.is_out_of_memory(RuntimeError("expected scalar type Half"))
    assert not memory.is_out_of_memory(ValueError("out of memory"))


@pytest.mark.parametrize(
    ("images", "height", "width", "budget", "hint"),
    [
        (4, 768, 768, 4 * 768 * 768, None),
        (5, 768, 768, 4 * 768 * 768, "of at most 4 at 768x768"),
        (1, 1024, 1024, 512 * 512, "height and width of at most 512 for 1 image(s)"),
        (8, 64, 64, 4096, "of at most 1 at 64x64"),
        (8, 1024, 1024, 100, "a smaller height, width and num_images_per_prompt"),
    ],
)
def test_the_pixel_budget(images: int, height: int, width: int, budget: int, hint: str | None) -> None:
    if hint is None:
        memory.check_pixel_budget(images, height, width, budget)
        return
    with pytest.raises(errors.InvalidInput) as info:
        memory.check_pixel_budget(images, height, width, budget)
    assert hint in info.value.message and f"limit of {budget} pixels" in info.value.message
