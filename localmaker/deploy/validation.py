"""Up-front argument checks: a wrong role or count, a mistyped keyword or an SDK feature localmaker does not
simulate fails at once, with the fix in the message; and the SDK's rule for naming resources."""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Iterable, Mapping

from localmaker.errors import ConfigurationError

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_RESOURCE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_NAME_WITH_TIMESTAMP = re.compile(r"^(.+)-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{3}|\d{6}-\d{4})")


def check_role(role: str | None) -> str:
    if not role:
        raise ConfigurationError(
            "role is required: pass the ARN of a SageMaker execution role, "
            "e.g. 'arn:aws:iam::123456789012:role/SageMakerRole'"
        )
    if not _ROLE_ARN.match(role):
        raise ConfigurationError(
            f"role {role!r} is not an IAM role ARN; expected arn:aws:iam::<12-digit account>:role/<name>"
        )
    return role


def check_instance_count(count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigurationError(f"initial_instance_count must be a whole number of at least 1, not {count!r}")
    return count


def check_resource_name(name: str, what: str = "endpoint_name") -> str:
    if not _RESOURCE_NAME.match(name):
        raise ConfigurationError(
            f"{what} {name!r} is not a valid SageMaker name: use 1-63 letters, digits and hyphens, "
            "starting with a letter or digit"
        )
    return name


# SDK v2 arguments that ask for a SageMaker feature localmaker does not simulate. Accepting one and
# running without it would pass a rehearsal that the cloud then runs differently, so each is refused
# with what to do instead. Arguments that mean nothing on one machine (tags, kms_key, volume_size, ...)
# are accepted and passed on in the AWS requests, where moto records them and real SageMaker applies them.
UNSUPPORTED_SDK_ARGUMENTS = {
    "accelerator_type": "Elastic Inference accelerators are retired in SageMaker and not simulated; "
                        "use a GPU instance type such as 'ml.g5.xlarge' instead",
    "data_capture_config": "data capture (Model Monitor) is not simulated; deploy without it, and read "
                           "requests and answers from the instance log (session.local_endpoint(name))",
    "data_capture_config_dict": "data capture (Model Monitor) is not simulated; update without it",
    "inference_recommendation_id": "Inference Recommender jobs are not simulated; pass instance_type and "
                                   "initial_instance_count yourself",
    "explainer_config": "SageMaker Clarify online explainability is not simulated; deploy without it",
    "resources": "inference components (ResourceRequirements) are not simulated; deploy a model-based "
                 "endpoint with instance_type and initial_instance_count",
    "managed_instance_scaling": "managed instance scaling is not simulated: the endpoint keeps "
                                "initial_instance_count instances; scale with update_endpoint()",
    "max_instance_count": "managed instance scaling is not simulated: the endpoint keeps "
                          "initial_instance_count instances; pass that instead",
    "min_instance_count": "managed instance scaling is not simulated: the endpoint keeps "
                          "initial_instance_count instances; pass that instead",
    "inference_component_name": "inference components are not simulated; deploy a model-based endpoint",
    "routing_config": "localmaker routes between a variant's instances round-robin only; deploy without it",
    "model_reference_arn": "SageMaker hub model references are not simulated; pass model_data instead",
    "endpoint_logging": "live CloudWatch log streaming during deploy is not simulated; each instance's log "
                        "file is in session.local_endpoint(name).instances[i].log_file",
    "use_compiled_model": "SageMaker Neo compilation is not simulated; deploy the uncompiled model",
}


def refuse_unsupported(call: str, given: dict[str, object]) -> None:
    """ConfigurationError naming the first SDK argument set that localmaker cannot honour."""
    for name, value in given.items():
        if value not in (None, False) and name in UNSUPPORTED_SDK_ARGUMENTS:
            raise ConfigurationError(f"{call}: {name}={value!r} is not supported by localmaker: "
                                     f"{UNSUPPORTED_SDK_ARGUMENTS[name]}")


def refuse_unknown_keywords(call: str, unknown: dict[str, object], valid: Iterable[str]) -> None:
    """A TypeError, as Python raises for a bad keyword, that also names the closest valid one: the SDK
    swallows unknown keywords, so a typo there deploys something other than what was meant."""
    if not unknown:
        return
    name = sorted(unknown)[0]
    close = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keywords: {', '.join(sorted(valid))}"
    raise TypeError(f"{call}() got an unexpected keyword argument {name!r}{hint}")


def tag_list(tags: Mapping[str, str] | list[dict[str, str]] | None) -> list[dict[str, str]]:
    """The SDK's tag forms, a dict or a list of {"Key", "Value"}, as the list that AWS requests carry."""
    if not tags:
        return []
    if isinstance(tags, Mapping):
        return [{"Key": str(key), "Value": str(value)} for key, value in tags.items()]
    return [dict(tag) for tag in tags]


def sagemaker_timestamp() -> str:
    """The SDK's resource-name timestamp: UTC to the millisecond, e.g. 2024-05-01-12-30-00-123."""
    moment = time.time()
    return time.strftime("%Y-%m-%d-%H-%M-%S-", time.gmtime(moment)) + f"{int(moment * 1000) % 1000:03d}"


def name_from_base(base: str, max_length: int = 63) -> str:
    """``<base>-<timestamp>``, the base trimmed to fit, as the SDK's ``sagemaker.utils.name_from_base``
    names training jobs, models, endpoint configs and endpoints."""
    stamp = sagemaker_timestamp()
    return f"{base[: max_length - len(stamp) - 1]}-{stamp}"


def base_from_name(name: str) -> str:
    """The base that ``name_from_base`` started from, as the SDK's ``base_from_name`` reads it back."""
    matched = _NAME_WITH_TIMESTAMP.match(name)
    return matched.group(1) if matched else name
