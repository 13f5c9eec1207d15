"""One account id throughout: the role a user copies, the ARNs the control plane answers, STS and the README.

A new user compared the README's role (account 111122223333) with the ARNs that came back (123456789012)
and wondered which account they were in. moto answers for 123456789012, so everything says that.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from localmaker.control_plane.server import ControlPlane
from localmaker.deploy.validation import check_role
from localmaker.errors import ConfigurationError
from localmaker.spec.names import LOCAL_ACCOUNT_ID, PLACEHOLDER_ROLE
from tests.control_plane.plane_clients import plane_client

README = Path(__file__).resolve().parents[2] / "README.md"
# An account id as it appears in an ARN, an ECR registry or SageMaker's default bucket name.
_ACCOUNT_IN_TEXT = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):"
                              r"|(\d{12})\.dkr\.ecr|sagemaker-[a-z0-9-]+-(\d{12})")
# AWS's own images live in AWS's accounts (the Deep Learning Containers' registry), not the user's.
_AWS_IMAGE_ACCOUNTS = {"763104351884"}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    control_plane = ControlPlane(region="us-east-1", work_root=tmp_path_factory.mktemp("account")).start()
    try:
        yield control_plane
    finally:
        control_plane.stop()


def _account(arn: str) -> str:
    return arn.split(":")[4]


def test_the_placeholder_role_the_arns_and_sts_name_one_account(plane):
    assert _account(PLACEHOLDER_ROLE) == LOCAL_ACCOUNT_ID
    assert plane_client(plane, "sts").get_caller_identity()["Account"] == LOCAL_ACCOUNT_ID
    sagemaker = plane_client(plane, "sagemaker")
    arn = sagemaker.create_model(ModelName="one-account", ExecutionRoleArn=PLACEHOLDER_ROLE, PrimaryContainer={
        "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310"})["ModelArn"]
    assert _account(arn) == _account(PLACEHOLDER_ROLE)


def test_the_missing_role_message_suggests_a_role_in_the_same_account():
    with pytest.raises(ConfigurationError) as caught:
        check_role(None)
    (example,) = re.findall(r"arn:aws:iam::\d{12}:role/\S+?'", str(caught.value))
    assert _account(example) == LOCAL_ACCOUNT_ID


def test_every_account_id_in_the_readme_is_the_local_one():
    matches = _ACCOUNT_IN_TEXT.finditer(README.read_text())
    found = {next(group for group in match.groups() if group) for match in matches}
    assert found - _AWS_IMAGE_ACCOUNTS <= {LOCAL_ACCOUNT_ID}, (
        f"README.md names accounts {sorted(found - _AWS_IMAGE_ACCOUNTS)}; ARNs here use {LOCAL_ACCOUNT_ID}")
