"""A generation streamed as it runs: one JSON line per denoising step, then the result.

Asked for with ``"stream": true`` (through InvokeEndpointWithResponseStream), a text-to-image request is
answered in JSON Lines (``application/jsonlines``), one object per line:

    {"step": 1, "total": 30, "elapsed_s": 0.41}
    ...
    {"step": 30, "total": 30, "elapsed_s": 12.3}
    {"images": ["<base64 PNG>"], "seeds": [...], "parameters": {...}, "timings": {...}, "warnings": [...]}

The last line is exactly the JSON answer the same request gets without streaming, so a client reads
progress lines (they have ``step``) until the one with ``images``. ``elapsed_s`` counts from the start of
the generation. Each line is yielded as soon as its step ends.

diffusers reports a step through ``callback_on_step_end``, from inside the pipeline call, which cannot
yield; so the pipeline runs on a helper thread while this generator (on the caller's thread, the
container's model thread) waits for its steps and hands them on. The caller blocks for as long as the
helper runs, so there is still one pipeline call at a time. A reader that stops early (the client hung
up) stops the pipeline at its next step, and the generator returns only once the helper has ended.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

JSON_LINES = "application/jsonlines"
# Called after each denoising step with the step's number (from 1) and the number of steps.
StepCallback = Callable[[int, int], None]


class _Stopped(Exception):
    """Raised from the step callback to end a generation nobody reads any more."""


def progress_lines(generate: Callable[[StepCallback], Any]) -> Iterator[bytes]:
    """Run ``generate(on_step)`` on a helper thread; yield a line per step, then its result's ``to_json()``."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()
    started = time.perf_counter()

    def on_step(step: int, total: int) -> None:
        if stop.is_set():
            raise _Stopped()
        events.put(("step", {"step": step, "total": total, "elapsed_s": round(time.perf_counter() - started, 3)}))

    def work() -> None:
        try:
            events.put(("result", generate(on_step)))
        except BaseException as exc:  # noqa: BLE001 - raised again on the reading thread
            events.put(("error", exc))

    helper = threading.Thread(target=work, name="diffusion-stream", daemon=True)
    helper.start()
    try:
        while True:
            kind, value = events.get()
            if kind == "step":
                yield _line(value)
            elif kind == "result":
                yield _line(value.to_json())
                return
            else:
                raise value
    finally:
        stop.set()
        helper.join()


def _line(payload: Any) -> bytes:
    return (json.dumps(payload) + "\n").encode("utf-8")
