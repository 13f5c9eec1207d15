"""The control plane's errors: one tree of exceptions, each carrying its AWS error code and HTTP status.

Code raises them where it finds the fault, as moto does. ``ControlPlaneApp`` turns them into answers
in one place, at the WSGI boundary, in the shape botocore reads: a JSON body with ``__type`` and
``message`` (plus any members the operation's error shape has), and the code again in
``x-amzn-ErrorType``. The boundary picks the content type, because it depends on the API and not on
the error: the SageMaker API answers ``application/x-amz-json-1.1``, the runtime API (InvokeEndpoint)
answers ``application/json``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

from localmaker.control_plane.answers import AMZ_JSON, Answer
from localmaker.spec.names import endpoint_log_group_arn, sagemaker_arn


class ApiError(Exception):
    """An AWS error answer: ``code`` and ``status`` per class, a message, and optional members and headers."""

    code: ClassVar[str] = "InternalFailure"
    status: ClassVar[int] = 500
    names_its_type: ClassVar[bool] = True  # False for the few answers AWS sends without an error type

    def __init__(self, message: str, fields: Mapping[str, Any] | None = None,
                 headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.fields = dict(fields or {})
        self.headers = list(headers)

    def body(self) -> dict[str, Any]:
        typed = {"__type": self.code} if self.names_its_type else {}
        return {**typed, "message": self.message, **self.fields}

    def answer(self, content_type: str = AMZ_JSON) -> Answer:
        type_header = [("x-amzn-ErrorType", self.code)] if self.names_its_type else []
        return Answer.of_json(self.status, self.body(), content_type, [*type_header, *self.headers])

    @classmethod
    @contextlib.contextmanager
    def raised_for(cls, *kinds: type[Exception], prefix: str = "") -> Iterator[None]:
        """Within the block, a lower layer's ``kinds`` of exception are the caller's fault: raise ``cls``
        with their message (for the classes whose one argument is the message)."""
        try:
            yield
        except kinds as exc:
            raise cls(f"{prefix}{exc}") from exc


# -- the SageMaker API ---------------------------------------------------------------------------------


class ValidationException(ApiError):
    code, status = "ValidationException", 400


class ResourceInUse(ApiError):
    code, status = "ResourceInUse", 400


class SerializationException(ApiError):
    code, status = "SerializationException", 400


class EndpointNotFound(ValidationException):
    """moto's (and SageMaker's) answer for an endpoint that does not exist, word for word."""

    def __init__(self, region: str, name: str) -> None:
        super().__init__(f"Could not find endpoint '{sagemaker_arn(region, 'endpoint', name)}'.")


class TrainingJobNotFound(ValidationException):
    """moto's (and SageMaker's) answer for a training job that does not exist, word for word."""

    def __init__(self, region: str, name: str) -> None:
        super().__init__(f"Could not find training job '{sagemaker_arn(region, 'training-job', name)}'.")


# -- the runtime API (InvokeEndpoint) ------------------------------------------------------------------


class ValidationError(ApiError):
    """The runtime API's code for a bad request, where the SageMaker API says ValidationException."""

    code, status = "ValidationError", 400


class PayloadTooLarge(ApiError):
    """AWS answers an oversized invocation with a bare message; botocore then shows the status as the code."""

    code, status = "PayloadTooLarge", 413
    names_its_type = False

    def __init__(self, limit: int) -> None:
        super().__init__(f"HTTP content length exceeded {limit} bytes.")


class ModelError(ApiError):
    """The container answered an error: botocore's ModelError, with what the container said."""

    code, status = "ModelError", 424

    def __init__(self, region: str, endpoint_name: str, original_status: int, original_message: str) -> None:
        # AWS names the container, "primary" for a single-container model, not the variant.
        kind = "client" if 400 <= original_status < 500 else "server"
        super().__init__(
            f"Received {kind} error ({original_status}) from primary with message \"{original_message}\". "
            f"See the instance log of endpoint {endpoint_name} for more information.",
            {"OriginalStatusCode": original_status, "OriginalMessage": original_message,
             "LogStreamArn": endpoint_log_group_arn(region, endpoint_name)})


# -- either API, and localmaker's own routes -----------------------------------------------------------


class RequestTimeout(ApiError):
    code, status = "RequestTimeout", 408


class ServiceUnavailable(ApiError):
    """botocore retries this by itself, after the Retry-After the answer carries."""

    code, status = "ServiceUnavailable", 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers=[("Retry-After", str(retry_after_s))])


class UnknownOperation(ApiError):
    """A request naming no operation that localmaker or moto answers. The JSON protocols call it
    UnknownOperationException; the query protocol (IAM, STS) calls it InvalidAction."""

    code, status = "UnknownOperationException", 400
    query_code: ClassVar[str] = "InvalidAction"


class InternalFailure(ApiError):
    """A bug of localmaker's: the body says where to look, the traceback goes to the control plane's log."""

    code, status = "InternalFailure", 500


class NotFound(ApiError):
    code, status = "NotFound", 404


class MethodNotAllowed(ApiError):
    code, status = "MethodNotAllowed", 405


class ThrottlingException(ApiError):
    """InvokeEndpoint beyond a serverless endpoint's MaxConcurrency; botocore retries it with backoff."""

    code, status = "ThrottlingException", 429


class ModelNotReady(ApiError):
    """botocore's ModelNotReadyException: a serverless variant's compute is still being provisioned."""

    code, status = "ModelNotReadyException", 429


class TransformJobNotFound(ValidationException):
    """moto's (and SageMaker's) answer for a transform job that does not exist, word for word."""

    def __init__(self, region: str, name: str) -> None:
        super().__init__(f"Could not find transform job '{sagemaker_arn(region, 'transform-job', name)}'.")


# -- issue 15: quotas, and requests refused before any operation -----------------------------------------


class ResourceLimitExceeded(ApiError):
    """An account-style quota (service_quotas.py) would be exceeded: refused before anything starts."""

    code, status = "ResourceLimitExceeded", 400


class MissingAuthenticationToken(ApiError):
    """A call with no SigV4 signature at all, answered as AWS answers it. The JSON protocols say
    MissingAuthenticationTokenException; the query protocol says MissingAuthenticationToken."""

    code, status = "MissingAuthenticationTokenException", 403
    query_code: ClassVar[str] = "MissingAuthenticationToken"

    def __init__(self, detail: str = "") -> None:
        super().__init__("Missing Authentication Token" + (f" ({detail})" if detail else ""))


class AccessDenied(ApiError):
    """A request the control plane refuses to act on whoever sent it (request_guard.py): a foreign Host
    header (DNS rebinding) or a web page's cross-origin request."""

    code, status = "AccessDeniedException", 403
    query_code: ClassVar[str] = "AccessDenied"
    s3_code: ClassVar[str] = "AccessDenied"
