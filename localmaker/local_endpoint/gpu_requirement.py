"""Say so when a handler failed because it needs a GPU that this instance does not have.

A GPU instance type on a machine without one runs on the CPU. The built-in handler follows the device it
is given, but a user's script may pin ``cuda``; torch then fails with a message about CUDA that does not
say why there is none here. The FailureReason should.
"""

from __future__ import annotations

_CUDA_WORDS = ("cuda", "nvidia", "gpu")


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
