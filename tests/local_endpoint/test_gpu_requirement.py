"""A handler that pins CUDA on a machine without it fails with a reason that says it needs a GPU."""

from __future__ import annotations

import pytest
import torch

from localmaker.local_endpoint.gpu_requirement import needs_gpu_note

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the note given where CUDA is absent")


def _raised_by_pinning_cuda() -> BaseException:
    try:
        torch.zeros(1, device="cuda")
    except BaseException as exc:  # noqa: BLE001 - whatever this torch build raises is what a user's script meets
        return exc
    raise AssertionError("creating a CUDA tensor succeeded without CUDA")


def test_a_cuda_failure_gets_the_note(monkeypatch):
    monkeypatch.setenv("LOCALMAKER_DEVICE", "cpu")
    note = needs_gpu_note(_raised_by_pinning_cuda())
    assert note is not None and "needs a CUDA GPU" in note and "runs on cpu" in note


def test_other_failures_get_no_note():
    assert needs_gpu_note(ValueError("tokenizer.json is missing")) is None
