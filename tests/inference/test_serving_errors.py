"""The error tree: HTTP statuses, the toolkit-compatible attributes, and the toolkit base when present."""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

import pytest

from localmaker.inference import CODE_DIR
from tests.inference.handler_loader import sibling

errors = sibling("serving_errors")


@pytest.mark.parametrize(
    ("cls", "status", "phrase"),
    [
        (errors.InvalidInput, 400, "Bad Request"),
        (errors.UnsupportedContentType, 415, "Unsupported Media Type"),
        (errors.UnsupportedAccept, 406, "Not Acceptable"),
        (errors.GenerationOutOfMemory, 503, "Service Unavailable"),
    ],
)
def test_each_error_carries_its_status(cls: Any, status: int, phrase: str) -> None:
    err = cls("field x is wrong: send y")
    assert isinstance(err, errors.InferenceError)
    assert issubclass(cls, Exception)
    assert (err.status_code, err.message, err.phrase) == (status, "field x is wrong: send y", phrase)
    assert str(err) == "field x is wrong: send y"


def test_model_load_error_is_a_runtime_error_without_http_status() -> None:
    err = errors.ModelLoadError("bad dir")
    assert isinstance(err, RuntimeError)
    assert not hasattr(err, "status_code")


def test_errors_derive_from_the_toolkit_base_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    class BaseInferenceToolkitError(Exception):
        def __init__(self, status_code: int, message: str, phrase: str) -> None:
            self.status_code = status_code
            self.message = message
            self.phrase = phrase
            super().__init__(status_code, message, phrase)

    toolkit = types.ModuleType("sagemaker_inference")
    toolkit_errors = types.ModuleType("sagemaker_inference.errors")
    toolkit_errors.BaseInferenceToolkitError = BaseInferenceToolkitError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sagemaker_inference", toolkit)
    monkeypatch.setitem(sys.modules, "sagemaker_inference.errors", toolkit_errors)

    spec = importlib.util.spec_from_file_location("serving_errors_with_toolkit", CODE_DIR / "serving_errors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    err = module.InvalidInput('"inputs" is empty: send text')
    assert isinstance(err, BaseInferenceToolkitError)
    assert (err.status_code, err.message, err.phrase) == (400, '"inputs" is empty: send text', "Bad Request")
