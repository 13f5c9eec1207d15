"""One exception tree for the client side of localmaker.

Everything a user can catch derives from :class:`LocalmakerError`, so a script can tell a rehearsal
failure from a bug in its own code. Errors inside the container (the local endpoint) have their own
tree in ``local_endpoint.errors`` because they map to HTTP statuses, not to Python callers.
"""

from __future__ import annotations

from botocore.exceptions import ClientError


class LocalmakerError(Exception):
    """Base class of every error localmaker raises on purpose."""


class ConfigurationError(LocalmakerError, ValueError):
    """An argument was wrong before anything started: say which one and how to fix it."""


class ArtifactError(LocalmakerError):
    """A model source or model.tar.gz cannot be used (missing, corrupt, unsafe or tampered with)."""


class DeploymentError(LocalmakerError):
    """An endpoint could not be brought InService; the message carries its FailureReason."""


class ModelError(LocalmakerError, ClientError):
    """The container answered an invocation with an error: botocore's ModelError, as in the cloud.

    It is a :class:`botocore.exceptions.ClientError`, so a script's ``except ClientError`` that checks
    ``err.response["Error"]["Code"] == "ModelError"`` behaves here as it does against SageMaker, where
    ``response["OriginalStatusCode"]`` and ``response["OriginalMessage"]`` carry what the container sent.
    ``original_status_code`` and ``original_message`` hold the same, so tests can assert on the 4xx/5xx
    the real endpoint would return.
    """

    def __init__(self, original_status_code: int, original_message: str, endpoint_name: str = "",
                 evidence: str = "") -> None:
        self.original_status_code = original_status_code
        self.original_message = original_message
        self.endpoint_name = endpoint_name
        self.evidence = evidence
        where = f" from endpoint {endpoint_name!r}" if endpoint_name else ""
        kind = "client" if 400 <= original_status_code < 500 else "server"
        message = f"Received {kind} error ({original_status_code}){where} with message \"{original_message}\""
        # AWS's first sentence, then where AWS points to CloudWatch: the local instance log and the end of
        # its traceback (instance_evidence.py), read on this machine and never sent in an answer.
        message += f". {evidence}" if evidence else ""
        # SageMaker answers 424 and puts the container's own status and body beside the error.
        super().__init__({"Error": {"Code": "ModelError", "Message": message},
                          "OriginalStatusCode": original_status_code, "OriginalMessage": original_message,
                          "ResponseMetadata": {"HTTPStatusCode": 424}}, "InvokeEndpoint")

    def __reduce__(self) -> tuple[type[ModelError], tuple[int, str, str, str]]:
        # ClientError pickles as a plain ClientError; keep the class, for multiprocessing and pytest-xdist.
        return type(self), (self.original_status_code, self.original_message, self.endpoint_name, self.evidence)


class EndpointNotFound(LocalmakerError, LookupError):
    """The control plane runs no endpoint of that name; the message suggests the names it does run."""


class TrainingError(LocalmakerError):
    """A training job ended Failed or Stopped; the message carries its FailureReason.

    The SageMaker SDK raises ``UnexpectedStatusException`` here; ``job_name`` and ``failure_reason``
    let a script report it the same way.
    """

    def __init__(self, job_name: str, status: str, failure_reason: str) -> None:
        self.job_name = job_name
        self.status = status
        self.failure_reason = failure_reason
        super().__init__(f"training job {job_name!r} ended {status}: {failure_reason or 'no reason given'}")
