"""The names and limits of SageMaker's contracts, each stated once.

The client, the control plane and the container all read them from here. The shipped code (``inference/``
and ``training/``) cannot import localmaker, so it keeps copies of the few it needs; a test holds those
copies equal to these.
"""

from __future__ import annotations

# InvokeEndpoint's request limit for a real-time endpoint; AWS answers 413 above it.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# A serverless endpoint's request limit (Serverless Inference's documented 4 MB).
MAX_SERVERLESS_PAYLOAD_BYTES = 4 * 1024 * 1024

# Where a SageMaker container finds the unpacked model.tar.gz (real scripts hard-code it).
SAGEMAKER_MODEL_DIR = "/opt/ml/model"
# The handler script in model.tar.gz's code/ folder, unless SAGEMAKER_PROGRAM names another.
DEFAULT_PROGRAM = "inference.py"
CODE_FOLDER = "code"

CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
TARGET_VARIANT_HEADER = "X-Amzn-SageMaker-Target-Variant"
INVOKED_VARIANT_HEADER = "x-Amzn-Invoked-Production-Variant"
# InvokeEndpointWithResponseStream's own: the Accept it forwards, and the container's Content-Type it answers.
STREAM_ACCEPT_HEADER = "X-Amzn-SageMaker-Accept"
STREAM_CONTENT_TYPE_HEADER = "X-Amzn-SageMaker-Content-Type"

# The account moto answers for, and so the one in every ARN the control plane builds.
LOCAL_ACCOUNT_ID = "123456789012"
# moto accepts any credentials; these keep boto3 from looking for real ones.
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# What scripts, the CLI and the benchmarks pass as ``role``: any well-formed role ARN passes the control
# plane's checks, and nothing is assumed in AWS.
# The same account as the ARNs (one account throughout, as in one real AWS account).
PLACEHOLDER_ROLE = f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/SageMakerRole"

# CloudWatch log groups, as SageMaker names them.
ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints/{name}"
ENDPOINT_LOG_STREAM = "{variant}/{instance_id}"  # one stream per instance, e.g. AllTraffic/i-0a1b2c3d4e5f67890
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"  # one stream per instance: <job>/<instance-id>

# What the built-in LoRA training writes and the built-in handler reads: the adapter in the layout stock
# ``pipe.load_lora_weights(dir)`` reads, and the reference to the base model it was trained on.
LORA_WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
LORA_BASE_MODEL_FILE = "localmaker_base_model.json"


def endpoint_log_group(name: str) -> str:
    return ENDPOINT_LOG_GROUP.format(name=name)


def endpoint_log_stream(variant: str, instance_id: str) -> str:
    return ENDPOINT_LOG_STREAM.format(variant=variant, instance_id=instance_id)


def endpoint_log_group_arn(region: str, name: str) -> str:
    return f"arn:aws:logs:{region}:{LOCAL_ACCOUNT_ID}:log-group:{endpoint_log_group(name)}"


def sagemaker_arn(region: str, kind: str, name: str) -> str:
    """``arn:aws:sagemaker:<region>:<account>:<kind>/<name>``, as moto and SageMaker build them."""
    return f"arn:aws:sagemaker:{region}:{LOCAL_ACCOUNT_ID}:{kind}/{name}"
