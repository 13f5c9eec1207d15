"""Session: where a script's AWS calls go. By default, an embedded control plane on 127.0.0.1;
with ``target="aws"``, real AWS through the ordinary boto3 credential chain."""

from __future__ import annotations

import atexit
import difflib
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from localmaker.deploy.endpoint_view import EndpointView
from localmaker.deploy.plain_boto3 import refuse_supplied_credentials, supply_missing_aws_defaults
from localmaker.errors import ConfigurationError, DeploymentError, EndpointNotFound
from localmaker.spec.names import LOCAL_CREDENTIALS, endpoint_log_group
from localmaker.spec.sdk_config import default_bucket as sdk_default_bucket

if TYPE_CHECKING:
    from localmaker.control_plane.server import ControlPlane

logger = logging.getLogger(__name__)

TARGETS = ("local", "aws")
LOCAL_REGION = "us-east-1"
# Real endpoints take minutes, and DescribeEndpoint is throttled per account: poll as the SDK's waiter does.
_POLL_S = {"local": 0.25, "aws": 15.0}
_MISSING_BUCKET_CODES = {"404", "NoSuchBucket", "NotFound"}

_LIVE_CONTROL_PLANES: set[ControlPlane] = set()


@atexit.register
def _stop_embedded_control_planes() -> None:
    """An interpreter that exits without delete_endpoint() must still leave no instance behind."""
    for control_plane in list(_LIVE_CONTROL_PLANES):
        control_plane.stop()


class Session:
    """Holds the boto3 clients; owns the embedded control plane when no ``endpoint_url`` is given.

    ``target="aws"`` starts nothing locally: the clients are ordinary boto3 clients for ``region_name``
    (else the boto3 session's region), with the default credential chain or the ``boto_session`` given.
    ``default_bucket`` replaces ``sagemaker-<region>-<account>`` as the bucket artifacts go to.
    Without ``work_root``, the embedded control plane works in a ``/tmp/localmaker-*`` folder that is
    removed when the session closes, unless ``keep_work=True`` (or ``LOCALMAKER_KEEP_WORK=1``) keeps it.
    A local session sets ``AWS_DEFAULT_REGION`` and dummy credentials in ``os.environ`` where boto3 finds
    none, so that a plain ``boto3.client(..., endpoint_url=session.endpoint_url)`` works on a machine with no
    AWS set-up; a region or credentials that boto3 does find are left alone.
    """

    def __init__(self, endpoint_url: str | None = None, region_name: str | None = None,
                 work_root: str | Path | None = None, startup_timeout_s: float = 600.0, target: str = "local",
                 boto_session: boto3.Session | None = None, default_bucket: str | None = None,
                 keep_work: bool | None = None) -> None:
        if target not in TARGETS:
            raise ConfigurationError(f"target {target!r} is not one of {', '.join(map(repr, TARGETS))}: "
                                     "'local' rehearses on this machine, 'aws' deploys to real SageMaker")
        self.target = target
        self._control_plane: ControlPlane | None = None
        self.endpoint_url: str | None
        if target == "aws":
            if endpoint_url is not None:
                raise ConfigurationError("endpoint_url attaches to a localmaker control plane; target='aws' "
                                         "talks to AWS itself: leave endpoint_url out")
            self.boto_session, self.region_name = _aws_boto_session(region_name, boto_session)
            self.endpoint_url = None
        else:
            if boto_session is not None:
                raise ConfigurationError("boto_session is for target='aws'; the local target uses its own "
                                         "dummy credentials against the control plane")
            region_name = region_name or LOCAL_REGION
            if endpoint_url is None:
                # Imported here: a script that attaches to `localmaker up`, or targets AWS, never loads moto.
                from localmaker.control_plane.server import ControlPlane

                self._control_plane = ControlPlane(region=region_name, work_root=work_root,
                                                   startup_timeout_s=startup_timeout_s, keep_work=keep_work).start()
                _LIVE_CONTROL_PLANES.add(self._control_plane)
                endpoint_url = self._control_plane.url
            self.endpoint_url = endpoint_url.rstrip("/")
            self.region_name = region_name
            self.boto_session = boto3.Session(region_name=region_name, **LOCAL_CREDENTIALS)
            supply_missing_aws_defaults(region_name)
        self.sagemaker_client = self._client("sagemaker")
        self.sagemaker_runtime_client = self._client("sagemaker-runtime")
        self.s3_client = self._client("s3")
        self._requested_bucket = default_bucket
        self._default_bucket: str | None = None
        self._bucket_lock = threading.Lock()

    @property
    def is_local(self) -> bool:
        return self.target == "local"

    def _client(self, service: str) -> Any:
        if self.endpoint_url is None:
            return self.boto_session.client(service, region_name=self.region_name)
        return self.boto_session.client(service, endpoint_url=self.endpoint_url)

    @property
    def account_id(self) -> str:
        return str(self._client("sts").get_caller_identity()["Account"])

    def default_bucket(self) -> str:
        """``sagemaker-<region>-<account>`` (or the ``default_bucket`` given), created on first use, as the
        SageMaker SDK does."""
        with self._bucket_lock:
            if self._default_bucket is None:
                bucket = self._requested_bucket or sdk_default_bucket(self.region_name, self.account_id)
                self.ensure_bucket(bucket)
                self._default_bucket = bucket
            return self._default_bucket

    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` in this session's region unless it exists; one we may not use is an error."""
        try:
            self.s3_client.head_bucket(Bucket=bucket)
            return
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in _MISSING_BUCKET_CODES:
                raise ConfigurationError(
                    f"S3 bucket {bucket!r} exists but this session cannot use it ({code}): it may belong to "
                    "another account, or the credentials lack s3:ListBucket; pass default_bucket=... "
                    "to Session"
                ) from None
        # Outside us-east-1, S3 refuses a bucket without the region as its location constraint.
        location = {} if self.region_name == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": self.region_name}}
        self.s3_client.create_bucket(Bucket=bucket, **location)

    def upload_file(self, path: Path, key: str, bucket: str | None = None) -> str:
        bucket = bucket or self.default_bucket()
        self.s3_client.upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"

    def require_local(self, what: str) -> str:
        """The control plane's URL, or a clear error for a feature that only exists on this machine."""
        if self.endpoint_url is None:
            raise ConfigurationError(
                f"{what} exists only on the local target: with target='aws' the endpoint runs in SageMaker; "
                "use sagemaker_client.describe_endpoint, sagemaker_runtime_client.invoke_endpoint and the "
                f"CloudWatch log group {endpoint_log_group('<name>')} instead"
            )
        return self.endpoint_url

    def local_endpoint(self, name: str) -> EndpointView:
        """The control plane's view of a running endpoint: instance URLs, devices, log files."""
        url = self.require_local("local_endpoint()")
        try:
            with urllib.request.urlopen(f"{url}/_localmaker/endpoints/{name}", timeout=10) as answer:
                return EndpointView(json.load(answer))
        except urllib.error.HTTPError as exc:
            if exc.code != 400 or b"Could not find endpoint" not in exc.read():
                raise
        with urllib.request.urlopen(f"{url}/_localmaker/endpoints", timeout=10) as answer:
            running = [str(e["EndpointName"]) for e in json.load(answer)["Endpoints"]]
        close = difflib.get_close_matches(name, running, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        more = f" and {len(running) - 10} more" if len(running) > 10 else ""
        shown = ", ".join(map(repr, sorted(running)[:10])) + more
        known = f" It runs {shown}." if running else " It runs no endpoint."
        raise EndpointNotFound(f"endpoint {name!r} not found on the control plane at {url}{hint}{known}")

    def failure_evidence(self, endpoint_name: str, message: str, instance_url: str | None = None) -> str:
        """Where a failure of ``endpoint_name`` left its traceback: the instance log's path and the end of
        its traceback, cut to the user's frames (instance_evidence.py); "" where there is none to read."""
        from localmaker.deploy.instance_evidence import endpoint_pointer

        evidence = endpoint_pointer(self, endpoint_name, message, instance_url)
        if evidence and self._control_plane is not None:
            self._control_plane.evidence_cited = True  # closing says where that log went
        return evidence

    def wait_for_endpoint(self, name: str, timeout_s: float = 900.0, poll_s: float | None = None,
                          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Poll DescribeEndpoint until InService; a Failed endpoint raises with its FailureReason.

        ``progress`` receives each status seen, so callers can show the wait as the SDK does.
        """
        interval = _POLL_S[self.target] if poll_s is None else poll_s
        deadline = time.monotonic() + timeout_s
        while True:
            description = self.sagemaker_client.describe_endpoint(EndpointName=name)
            status = description["EndpointStatus"]
            if progress is not None:
                progress(status)
            if status == "InService":
                return dict(description)
            if status == "Failed":
                reason = str(description.get("FailureReason", "no reason given"))
                evidence = self.failure_evidence(name, reason)
                raise DeploymentError(f"endpoint {name!r} failed to start: {reason}" + (f". {evidence}" if evidence
                                                                                        else ""))
            if time.monotonic() > deadline:
                raise DeploymentError(f"endpoint {name!r} was still {status} after {timeout_s:.0f}s")
            time.sleep(interval)

    def close(self) -> None:
        """Stop the embedded control plane and every instance it runs (no-op for an attached one, and for
        AWS, where endpoints outlive the script until deleted)."""
        if self._control_plane is not None:
            self._control_plane.stop()
            _LIVE_CONTROL_PLANES.discard(self._control_plane)
            self._control_plane = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _aws_boto_session(region_name: str | None, boto_session: boto3.Session | None) -> tuple[boto3.Session, str]:
    """A boto3 session for real AWS and its region, checked up front: a missing region or credentials fail
    here, not at the first call halfway through a deployment. A given session is used, never modified;
    ``region_name`` wins over its region because clients are made with the region named."""
    session = boto_session or boto3.Session(region_name=region_name)
    region = region_name or session.region_name
    if not region:
        raise ConfigurationError("target='aws' needs a region: pass region_name='eu-west-1' (for example), or "
                                 "set AWS_DEFAULT_REGION or a region in your AWS profile")
    refuse_supplied_credentials(session)
    if session.get_credentials() is None:
        raise ConfigurationError("target='aws' found no AWS credentials: run `aws configure` or `aws sso login`, "
                                 "set AWS_PROFILE, or pass boto_session=boto3.Session(...)")
    overrides = sorted(k for k in os.environ if k == "AWS_ENDPOINT_URL" or k.startswith("AWS_ENDPOINT_URL_"))
    if overrides:
        # `localmaker up` prints `export AWS_ENDPOINT_URL=...`; left set, boto3 sends target='aws' calls there.
        warnings.warn(f"{', '.join(overrides)} is set, so boto3 sends target='aws' calls there rather than to "
                      "AWS; unset it to reach real SageMaker", stacklevel=3)
    return session, str(region)
