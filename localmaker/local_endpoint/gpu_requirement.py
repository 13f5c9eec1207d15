"""Say so when a GPU instance type runs here without a GPU: once when deploying, and in the failure of a
handler that needs one.

A GPU instance type on a machine without one runs on the CPU. The built-in handler follows the device it
is given, but a user's script may pin ``cuda``; torch then fails with a message about CUDA that does not
say why there is none here. The FailureReason should. The deploy-time warning is said once per process:
a notebook that deploys ten GPU endpoints on a laptop learns the fact once, not ten times.
"""

from __future__ import annotations

import threading
import warnings

_CUDA_WORDS = ("cuda", "nvidia", "gpu")
_warned = threading.Event()  # set once the missing GPU has been reported in this process


def warn_missing_gpu_once(instance_type: str, gpu_model: str, stacklevel: int = 2) -> bool:
    """Warn (a UserWarning at the caller's ``stacklevel``) that ``instance_type``'s GPU is missing here and
    the endpoint runs on the CPU, the first time this process deploys a GPU type; later calls say nothing.
    Returns whether it warned. The warnings module's own once-per-location rule is not enough: every
    ``deploy()`` line of a script is a location of its own."""
    if _warned.is_set():
        return False
    _warned.set()
    warnings.warn(f"{instance_type} has a {gpu_model} GPU but this machine has none: the endpoint runs on the "
                  "CPU. The built-in handler gives the same results, slower; a script that requires CUDA fails "
                  "to load, and the FailureReason says so. (Said once per process, for every GPU endpoint.)",
                  UserWarning, stacklevel=stacklevel + 1)
    return True


def needs_gpu_note(exc: BaseException, device: str) -> str | None:
    """A sentence to add to the failure when ``exc`` is about CUDA and no CUDA device is visible here;
    ``device`` is where the instance was placed (its settings' ``device``)."""
    text = f"{type(exc).__name__}: {exc}".lower()
    if not any(word in text for word in _CUDA_WORDS) or _cuda_available():
        return None
    return (f"the script needs a CUDA GPU, and this instance runs on {device}: this machine has none (or the "
            "instance type has none); deploy where a GPU is, or let the script fall back to the CPU "
            "(torch.device('cuda' if torch.cuda.is_available() else 'cpu'))")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA install is no CUDA for this purpose
        return False
