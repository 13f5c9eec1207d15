"""Up-front argument checks: a wrong role or count fails at once, with the fix in the message."""

from __future__ import annotations

import re

from localmaker.errors import ConfigurationError

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_RESOURCE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def check_role(role: str | None) -> str:
    if not role:
        raise ConfigurationError(
            "role is required: pass the ARN of a SageMaker execution role, "
            "e.g. 'arn:aws:iam::111122223333:role/SageMakerRole'"
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
