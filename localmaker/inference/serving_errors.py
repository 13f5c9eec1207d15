"""Errors that carry their HTTP meaning, so a bad request is a 4xx and not a handler crash.

The SageMaker inference toolkit answers with an exception's own status only when it derives from
``sagemaker_inference.errors.BaseInferenceToolkitError``; anything else becomes a 500. So the tree is
rooted there when the toolkit is installed (a real container), and on an equivalent local base class
otherwise. Either way every error has ``status_code``, ``message`` and ``phrase``, which is what the
local server reads too.

Messages say what was wrong and how to fix it: they are the only thing the caller sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING


class _LocalToolkitError(Exception):
    """Same constructor and attributes as the toolkit's ``BaseInferenceToolkitError``."""

    def __init__(self, status_code: int, message: str, phrase: str) -> None:
        self.status_code = status_code
        self.message = message
        self.phrase = phrase
        super().__init__(status_code, message, phrase)


def _toolkit_base() -> type[Exception]:
    try:
        from sagemaker_inference.errors import BaseInferenceToolkitError
    except ImportError:
        return _LocalToolkitError
    return BaseInferenceToolkitError


if TYPE_CHECKING:
    _Base = _LocalToolkitError
else:
    _Base = _toolkit_base()


class InferenceError(_Base):
    """A request the handler refuses; ``status_code`` is the HTTP status the caller gets."""

    status_code: int = 500
    phrase: str = "Internal Server Error"

    def __init__(self, message: str) -> None:
        super().__init__(type(self).status_code, message, type(self).phrase)
        self.status_code = type(self).status_code
        self.message = message
        self.phrase = type(self).phrase

    def __str__(self) -> str:
        return self.message


class InvalidInput(InferenceError):
    """The body parsed, but a field is missing, of the wrong type or out of range."""

    status_code = 400
    phrase = "Bad Request"


class UnsupportedContentType(InferenceError):
    """The request's Content-Type is not one the handler decodes."""

    status_code = 415
    phrase = "Unsupported Media Type"


class UnsupportedAccept(InferenceError):
    """The caller asked for a response type the handler cannot produce."""

    status_code = 406
    phrase = "Not Acceptable"


class GenerationOutOfMemory(InferenceError):
    """The accelerator ran out of memory on this request; the memory was freed and the next one is served."""

    status_code = 503
    phrase = "Service Unavailable"


class ModelLoadError(RuntimeError):
    """model_fn cannot load this model directory; the endpoint fails to start with this reason."""
