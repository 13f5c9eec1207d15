"""The machine-readable progress line the control plane turns into a progress bar and metrics.

``[localmaker:progress] step=3 total=40 loss=0.071450`` on stdout, the only thing this script prints
there (logs go to stderr). The format is a copy of ``localmaker.spec.training_progress``'s, which this
script cannot import; a test holds the two equal.
"""

from __future__ import annotations

import math
import sys

PROGRESS_PREFIX = "[localmaker:progress]"
MAX_PROGRESS_LINES = 1000  # above this many steps, print every k-th step (and always the last)


def format_progress(step: int, total: int, loss: float) -> str:
    return f"{PROGRESS_PREFIX} step={step} total={total} loss={loss:.6f}"


def progress_every(total: int) -> int:
    return max(1, math.ceil(total / MAX_PROGRESS_LINES))


def report_progress(step: int, total: int, loss: float) -> None:
    """Print the progress line for ``step``, at most ``MAX_PROGRESS_LINES`` a run, always the last."""
    if step % progress_every(total) == 0 or step == total:
        sys.stdout.write(format_progress(step, total, loss) + "\n")
        sys.stdout.flush()
