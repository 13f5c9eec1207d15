"""The SageMaker Python SDK's config file that keeps an SDK script on this machine.

Pointing ``AWS_ENDPOINT_URL`` at the control plane is not enough for the SDK (v2 and v3): its
``Session.default_bucket()`` asks STS for the account at a hard-coded regional AWS address, and v3's
ModelBuilder sends telemetry to an S3 address of AWS's after each call. The SDK reads defaults from a
YAML file named by ``SAGEMAKER_ADMIN_CONFIG_OVERRIDE``; one that names the default bucket and opts out of
telemetry leaves nothing for it to reach outside. A user's own config (the user layer) still wins.
"""

from __future__ import annotations

from localmaker.spec.names import LOCAL_ACCOUNT_ID

CONFIG_ENV_VAR = "SAGEMAKER_ADMIN_CONFIG_OVERRIDE"
CONFIG_FILE = "sagemaker-sdk-config.yaml"


def default_bucket(region: str, account: str = LOCAL_ACCOUNT_ID) -> str:
    """The bucket the SDK derives for a region and account (moto's, unless another is given)."""
    return f"sagemaker-{region}-{account}"


def sdk_config(region: str) -> str:
    return ("SchemaVersion: '1.0'\n"
            "SageMaker:\n"
            "  PythonSDK:\n"
            "    Modules:\n"
            "      TelemetryOptOut: true\n"
            "      Session:\n"
            f"        DefaultS3Bucket: {default_bucket(region)}\n")
