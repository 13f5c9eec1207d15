"""How long the denoising loop took, measured without stalling it.

Synchronising the host with the GPU at every step would serialise kernel launches and slow the very
loop being measured. So the loop's two ends are marked asynchronously: the first UNet call (a forward
pre-hook) and the end of the last step (the pipeline's ``callback_on_step_end``). On CUDA the marks are
CUDA events recorded in the stream; they are read after the single synchronisation that follows the
pipeline call. On the CPU, where everything is synchronous, they are plain clock readings.
"""

from __future__ import annotations

import time
from typing import Any

import torch


class DenoisingTimer:
    """Attach to the UNet, pass ``on_step_end`` as ``callback_on_step_end``, read ``elapsed_ms`` after."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._cuda = device.type == "cuda"
        self._start: Any = None
        self._end: Any = None
        self._hook: Any = None

    def _mark(self) -> Any:
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self._device))
            return event
        return time.perf_counter()

    def attach(self, unet: torch.nn.Module) -> None:
        def first_call(module: torch.nn.Module, args: Any) -> None:
            if self._start is None:
                self._start = self._mark()

        self._hook = unet.register_forward_pre_hook(first_call)

    def detach(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_step_end(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        self._end = self._mark()
        return callback_kwargs

    def elapsed_ms(self) -> float:
        """Milliseconds from the first UNet call to the end of the last step (after the host synced)."""
        if self._start is None or self._end is None:
            return 0.0
        if self._cuda:
            return float(self._start.elapsed_time(self._end))
        return (self._end - self._start) * 1000.0
