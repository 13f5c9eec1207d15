"""A local Session lets plain boto3 work on a machine with no AWS set-up, and leaves a real set-up alone."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import NoCredentialsError, NoRegionError

from localmaker.deploy.plain_boto3 import SUPPLIED_CREDENTIALS, supply_missing_aws_defaults
from localmaker.deploy.session import Session
from localmaker.errors import ConfigurationError

SET_HERE = ("AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@pytest.fixture
def bare_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS variable, no ~/.aws, no instance metadata: the README reader's laptop."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name in SET_HERE:  # so that whatever the code under test sets is undone after the test
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # boto3.client() caches what it found in its session
    return tmp_path


def test_a_bare_machine_gets_a_region_and_dummy_credentials(bare_machine: Path) -> None:
    with pytest.raises(NoRegionError):  # what the README's snippet met before
        boto3.client("sagemaker-runtime", endpoint_url="http://127.0.0.1:9")

    assert supply_missing_aws_defaults("eu-west-1") == list(SET_HERE)

    client = boto3.client("sagemaker-runtime", endpoint_url="http://127.0.0.1:9")
    assert client.meta.region_name == "eu-west-1"
    assert client._request_signer._credentials.access_key == SUPPLIED_CREDENTIALS["AWS_ACCESS_KEY_ID"]


def test_without_the_defaults_plain_boto3_has_no_credentials(bare_machine: Path) -> None:
    client = boto3.client("sagemaker-runtime", endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
    with pytest.raises(NoCredentialsError):
        client.invoke_endpoint(EndpointName="e", Body=b"{}")


def test_a_profile_of_the_user_is_never_replaced(bare_machine: Path) -> None:
    (bare_machine / "config").write_text("[default]\nregion = ap-southeast-2\n")
    (bare_machine / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAUSERKEY\naws_secret_access_key = secret\n")

    assert supply_missing_aws_defaults("us-east-1") == []

    assert not set(SET_HERE) & set(os.environ)
    session = boto3.Session()
    assert (session.region_name, session.get_credentials().access_key) == ("ap-southeast-2", "AKIAUSERKEY")


def test_only_what_is_missing_is_supplied(bare_machine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")

    assert supply_missing_aws_defaults("us-east-1") == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert os.environ["AWS_DEFAULT_REGION"] == "eu-central-1"


def test_target_aws_refuses_the_dummy_credentials_with_the_fix(bare_machine: Path) -> None:
    supply_missing_aws_defaults("us-east-1")

    with pytest.raises(ConfigurationError, match="dummy credentials a local Session set.*aws configure"):
        Session(target="aws", region_name="eu-west-1")
