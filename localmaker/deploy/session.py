"""Session: where a script's AWS calls go. By default, an embedded control plane on 127.0.0.1."""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from localmaker.deploy.control_plane import DUMMY_CREDENTIALS, ControlPlane
from localmaker.errors import DeploymentError

logger = logging.getLogger(__name__)

_LIVE_CONTROL_PLANES: set[ControlPlane] = set()


@atexit.register
def _stop_embedded_control_planes() -> None:
    """An interpreter that exits without delete_endpoint() must still leave no instance behind."""
    for control_plane in list(_LIVE_CONTROL_PLANES):
        control_plane.stop()


class Session:
    """Holds the boto3 clients; owns the embedded control plane when no ``endpoint_url`` is given."""

    def __init__(self, endpoint_url: str | None = None, region_name: str = "us-east-1",
                 work_root: str | Path | None = None, startup_timeout_s: float = 600.0) -> None:
        self._control_plane: ControlPlane | None = None
        if endpoint_url is None:
            self._control_plane = ControlPlane(region=region_name, work_root=work_root,
                                               startup_timeout_s=startup_timeout_s).start()
            _LIVE_CONTROL_PLANES.add(self._control_plane)
            endpoint_url = self._control_plane.url
        self.endpoint_url = endpoint_url.rstrip("/")
        self.region_name = region_name
        self.boto_session = boto3.Session(region_name=region_name, **DUMMY_CREDENTIALS)
        self.sagemaker_client = self._client("sagemaker")
        self.sagemaker_runtime_client = self._client("sagemaker-runtime")
        self.s3_client = self._client("s3")
        self._default_bucket: str | None = None
        self._bucket_lock = threading.Lock()

    def _client(self, service: str) -> Any:
        return self.boto_session.client(service, endpoint_url=self.endpoint_url)

    @property
    def account_id(self) -> str:
        return str(self._client("sts").get_caller_identity()["Account"])

    def default_bucket(self) -> str:
        """``sagemaker-<region>-<account>``, created on first use, as the SageMaker SDK does."""
        with self._bucket_lock:
            if self._default_bucket is None:
                bucket = f"sagemaker-{self.region_name}-{self.account_id}"
                try:
                    self.s3_client.head_bucket(Bucket=bucket)
                except ClientError:
                    self.s3_client.create_bucket(Bucket=bucket)
                self._default_bucket = bucket
            return self._default_bucket

    def upload_file(self, path: Path, key: str, bucket: str | None = None) -> str:
        bucket = bucket or self.default_bucket()
        self.s3_client.upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"

    def local_endpoint(self, name: str) -> dict[str, Any]:
        """The control plane's view of a running endpoint: instance URLs, devices, log files."""
        with urllib.request.urlopen(f"{self.endpoint_url}/_localmaker/endpoints/{name}", timeout=10) as answer:
            return dict(json.load(answer))

    def wait_for_endpoint(self, name: str, timeout_s: float = 900.0, poll_s: float = 0.25,
                          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Poll DescribeEndpoint until InService; a Failed endpoint raises with its FailureReason.

        ``progress`` receives each status seen, so callers can show the wait as the SDK does.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            description = self.sagemaker_client.describe_endpoint(EndpointName=name)
            status = description["EndpointStatus"]
            if progress is not None:
                progress(status)
            if status == "InService":
                return dict(description)
            if status == "Failed":
                raise DeploymentError(
                    f"endpoint {name!r} failed to start: {description.get('FailureReason', 'no reason given')}"
                )
            if time.monotonic() > deadline:
                raise DeploymentError(f"endpoint {name!r} was still {status} after {timeout_s:.0f}s")
            time.sleep(poll_s)

    def close(self) -> None:
        """Stop the embedded control plane and every instance it runs (no-op for an attached one)."""
        if self._control_plane is not None:
            self._control_plane.stop()
            _LIVE_CONTROL_PLANES.discard(self._control_plane)
            self._control_plane = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
