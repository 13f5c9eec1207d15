"""The container's error tree: every failure maps to one HTTP status, in one place.

The body is always ``{"error": {"code", "message"}}``; the traceback goes to the instance log, never to
the caller. Unlike the SageMaker inference toolkit, an unsupported media type is a 4xx, not a 500.
"""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

MAX_MESSAGE_CHARS = 1000


class EndpointError(Exception):
    status = 500
    code = "InternalFailure"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message[:MAX_MESSAGE_CHARS]}}


class BadRequest(EndpointError):
    status = 400
    code = "BadRequest"


class Forbidden(EndpointError):
    """A request a web page made (a foreign Host or an Origin): the container runs code for its caller."""

    status = 403
    code = "AccessDenied"


class UnsupportedAccept(EndpointError):
    status = 406
    code = "UnsupportedAccept"


class PayloadTooLarge(EndpointError):
    status = 413
    code = "PayloadTooLarge"


class UnsupportedContentType(EndpointError):
    status = 415
    code = "UnsupportedContentType"


class ModelNotReady(EndpointError):
    status = 503
    code = "ModelNotReady"


class ModelLoadFailed(ModelNotReady):
    """model_fn raised: the instance stays up so the control plane can read why."""

    code = "ModelLoadFailed"


class WorkerReplacing(ModelNotReady):
    """A model call is stuck past the timeout and its worker is being replaced: retry in a moment."""

    code = "WorkerReplacing"


class InstanceBusy(EndpointError):
    """The worker already holds as many request bytes as it buffers (LOCALMAKER_INSTANCE_BUFFER_MB); the
    request was never read whole, so no handler ran: retry, or send to another instance."""

    status = 503
    code = "InstanceBusy"


class HandlerFailure(EndpointError):
    """The handler raised something that names no status: the container's 500.

    Not "ModelError": that is AWS's 424 wrapping whatever the container answered.
    """

    status = 500
    code = "HandlerFailure"


class _HandlerStatusError(EndpointError):
    """A 4xx or 5xx a handler chose through its own ``status_code`` attribute (e.g. 503 on CUDA OOM)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def to_endpoint_error(exc: BaseException) -> EndpointError:
    """Map anything raised while serving to the error the caller sees.

    Handlers choose a status the way the SageMaker inference toolkit expects (an exception with an
    integer ``status_code``, as ``BaseInferenceToolkitError`` has), so the same script answers the same
    4xx or 5xx here and in a real container. Everything else is the handler's failure: a 500.
    """
    if isinstance(exc, EndpointError):
        return exc
    if isinstance(exc, RequestEntityTooLarge):
        return PayloadTooLarge("request body is over the 6 MB SageMaker real-time limit; send less data "
                               "per request or use batch transform")
    if isinstance(exc, HTTPException):
        return _HandlerStatusError(exc.code or 400, exc.name.replace(" ", ""), exc.description or exc.name)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 600:
        message = getattr(exc, "message", None) or str(exc)
        return _HandlerStatusError(status, type(exc).__name__, str(message))
    detail = str(exc) or "no message"
    return HandlerFailure(f"{type(exc).__name__}: {detail} (the traceback is in the instance log)")
