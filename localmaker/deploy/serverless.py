"""ServerlessInferenceConfig: the SageMaker SDK v2 class of the same name, for ``Model.deploy``.

Same arguments and defaults as ``sagemaker.serverless.ServerlessInferenceConfig`` (2048 MB, a
MaxConcurrency of 5, no provisioned concurrency), checked here against AWS's bounds so that a wrong value
fails before anything is uploaded; the control plane (or SageMaker) checks them again.
"""

from __future__ import annotations

from localmaker.errors import ConfigurationError

MEMORY_SIZES_MB = (1024, 2048, 3072, 4096, 5120, 6144)  # ProductionVariantServerlessConfig's own steps
MAX_CONCURRENCY = 200
SERVERLESS_IMAGE_TYPE = "ml.m5.large"  # a CPU type: serverless compute has no GPU, so it takes the CPU image


class ServerlessInferenceConfig:
    """Deploy as a serverless endpoint: no instance type; compute starts on the first invocation."""

    def __init__(self, memory_size_in_mb: int = 2048, max_concurrency: int = 5,
                 provisioned_concurrency: int | None = None) -> None:
        if memory_size_in_mb not in MEMORY_SIZES_MB:
            raise ConfigurationError(f"memory_size_in_mb={memory_size_in_mb!r} is not one of "
                                     f"{', '.join(map(str, MEMORY_SIZES_MB))} (1 GB steps)")
        for name, value in (("max_concurrency", max_concurrency), ("provisioned_concurrency", provisioned_concurrency)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 1 <= value <= MAX_CONCURRENCY):
                raise ConfigurationError(f"{name}={value!r} must be a whole number from 1 to {MAX_CONCURRENCY}")
        if provisioned_concurrency is not None and provisioned_concurrency > max_concurrency:
            raise ConfigurationError(f"provisioned_concurrency={provisioned_concurrency} must be at most "
                                     f"max_concurrency={max_concurrency}")
        self.memory_size_in_mb = memory_size_in_mb
        self.max_concurrency = max_concurrency
        self.provisioned_concurrency = provisioned_concurrency

    def _to_request_dict(self) -> dict[str, int]:
        """The variant's ServerlessConfig, as the SDK builds it."""
        request = {"MemorySizeInMB": self.memory_size_in_mb, "MaxConcurrency": self.max_concurrency}
        if self.provisioned_concurrency is not None:
            request["ProvisionedConcurrency"] = self.provisioned_concurrency
        return request

    def __repr__(self) -> str:
        return (f"ServerlessInferenceConfig(memory_size_in_mb={self.memory_size_in_mb}, "
                f"max_concurrency={self.max_concurrency}, provisioned_concurrency={self.provisioned_concurrency})")


def describe_serverless(config: ServerlessInferenceConfig) -> str:
    provisioned = config.provisioned_concurrency
    return (f"serverless compute ({config.memory_size_in_mb} MB, at most {config.max_concurrency} invocations at once"
            + (f", {provisioned} provisioned" if provisioned else "") + ")")
