"""Memory: refuse requests that cannot fit up front, and survive the ones that run out anyway.

Activation memory grows with images x height x width, so a pixel budget (``LOCALMAKER_MAX_PIXELS``)
turns an obviously oversized request into a 400 that says how to fit, before any GPU work. A request
under the budget can still exhaust a GPU shared with other work; then the allocation error is turned
into a 503 once the memory is given back, so the next request is served normally.
"""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Callable
from typing import TypeVar

import torch
from handler_settings import ENV_MAX_PIXELS
from serving_errors import GenerationOutOfMemory, InvalidInput

logger = logging.getLogger(__name__)

T = TypeVar("T")

_MIN_SIDE = 64
_SIDE_MULTIPLE = 8


def check_pixel_budget(images: int, height: int, width: int, budget: int) -> None:
    """Raise a 400 saying how to fit when ``images x height x width`` exceeds ``budget``."""
    pixels = images * height * width
    if pixels <= budget:
        return
    fits = budget // (height * width)
    side = int(math.sqrt(budget / images)) // _SIDE_MULTIPLE * _SIDE_MULTIPLE
    hints = []
    if fits >= 1:
        hints.append(f'"parameters.num_images_per_prompt" of at most {fits} at {width}x{height}')
    if side >= _MIN_SIDE:
        hints.append(f"height and width of at most {side} for {images} image(s)")
    how = " or ".join(hints) if hints else "a smaller height, width and num_images_per_prompt"
    raise InvalidInput(
        f"the request asks for {images} image(s) of {width}x{height} = {pixels} pixels, over this endpoint's "
        f"limit of {budget} pixels per request ({ENV_MAX_PIXELS}): send {how}."
    )


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc)
    )


def release_accelerator_memory() -> None:
    """Collect garbage and hand cached CUDA blocks back; a no-op without CUDA."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_out_of_memory_as_503(call: Callable[[], T], asked: str) -> T:
    """``call()``, turning an out-of-memory error into ``GenerationOutOfMemory`` after freeing memory.

    ``asked`` describes the request (e.g. "2 image(s) of 512x512 with 30 steps") for the message.
    """
    try:
        return call()
    except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(exc):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # Past the except block the exception and its traceback are gone, and with them the frames that held
    # the request's activations; only now can the collector and empty_cache actually free them.
    release_accelerator_memory()
    logger.warning("out of memory generating %s: %s", asked, reason)
    raise GenerationOutOfMemory(
        f"the GPU ran out of memory generating {asked} ({reason}). The memory was released and the endpoint "
        'keeps serving: retry with fewer images ("parameters.num_images_per_prompt") or a smaller "height" '
        f'and "width" (the number of steps does not change peak memory); an operator can lower {ENV_MAX_PIXELS} '
        "so such requests are refused up front."
    )
