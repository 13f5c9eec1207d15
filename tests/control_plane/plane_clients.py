"""boto3 clients for a ControlPlane started in a test: its URL and region, dummy credentials, no retries
(a test wants the first answer, not botocore's retry of it)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from localmaker.control_plane.server import ControlPlane
from localmaker.spec.names import LOCAL_CREDENTIALS


def plane_client(plane: ControlPlane, service: str) -> Any:
    return boto3.client(service, endpoint_url=plane.url, region_name=plane.region,
                        config=Config(retries={"max_attempts": 1}), **LOCAL_CREDENTIALS)
