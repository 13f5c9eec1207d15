"""A handler that pins CUDA on a machine without it fails with a reason that says it needs a GPU."""

from __future__ import annotations

import pytest

from localmaker.local_endpoint import gpu_requirement
from localmaker.local_endpoint.gpu_requirement import needs_gpu_note


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without CUDA, wherever the test runs."""
    monkeypatch.setattr(gpu_requirement, "_cuda_available", lambda: False)


@pytest.mark.parametrize("message", [
    "AssertionError: Torch not compiled with CUDA enabled",  # a CPU build of torch
    "RuntimeError: No CUDA GPUs are available",  # a CUDA build with CUDA_VISIBLE_DEVICES=""
    "RuntimeError: Found no NVIDIA driver on your system.",
])
def test_a_cuda_failure_gets_the_note(no_cuda, message):
    note = needs_gpu_note(RuntimeError(message), "cpu")
    assert note is not None and "needs a CUDA GPU" in note and "runs on cpu" in note


def test_other_failures_get_no_note(no_cuda):
    assert needs_gpu_note(ValueError("tokenizer.json is missing"), "cpu") is None


def test_no_note_where_cuda_is_there(monkeypatch):
    monkeypatch.setattr(gpu_requirement, "_cuda_available", lambda: True)
    assert needs_gpu_note(RuntimeError("CUDA error: out of memory"), "cuda:0") is None
