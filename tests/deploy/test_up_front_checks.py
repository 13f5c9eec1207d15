"""Wrong arguments fail at once, before any process or AWS resource exists."""

from __future__ import annotations

import pytest

from localmaker import ConfigurationError
from localmaker.deploy import Estimator, Model, Session
from localmaker.deploy.validation import check_instance_count, check_resource_name, check_role
from localmaker.spec.instance_types import CATALOGUE, lookup
from localmaker.spec.names import PLACEHOLDER_ROLE

ROLE = PLACEHOLDER_ROLE


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    with Session(work_root=tmp_path_factory.mktemp("cp")) as embedded:
        yield embedded


def _resources(session: Session) -> tuple[list[str], list[str]]:
    # moto's state is per process, shared by every Session in it: compare, don't expect emptiness.
    client = session.sagemaker_client
    return ([e["EndpointName"] for e in client.list_endpoints()["Endpoints"]],
            [m["ModelName"] for m in client.list_models()["Models"]])


@pytest.mark.parametrize("role", [None, "", "SageMakerRole", "arn:aws:iam::1234:role/x",
                                  "arn:aws:iam::123456789012:user/alice"])
def test_a_wrong_role_is_refused_with_the_expected_form(role):
    with pytest.raises(ConfigurationError, match="arn:aws:iam::"):
        check_role(role)


def test_unknown_instance_type_suggests_the_closest(session):
    before = _resources(session)
    model = Model(model_data="minilm", role=ROLE, sagemaker_session=session)
    with pytest.raises(ConfigurationError, match="did you mean 'ml.g5.xlarge'"):
        model.deploy(initial_instance_count=1, instance_type="ml.g5.xlarg")
    with pytest.raises(ConfigurationError, match="local mode"):
        lookup("local_gpu")
    assert _resources(session) == before


@pytest.mark.parametrize("count", [0, -1, 1.5, "2", True])
def test_instance_count_must_be_a_positive_integer(count):
    with pytest.raises(ConfigurationError, match="initial_instance_count"):
        check_instance_count(count)


def test_resource_names_follow_sagemaker_rules():
    assert check_resource_name("my-endpoint-1") == "my-endpoint-1"
    for bad in ("-leading", "has_underscore", "x" * 64, ""):
        with pytest.raises(ConfigurationError):
            check_resource_name(bad)


def test_missing_model_data_fails_at_construction(session, tmp_path):
    before = _resources(session)
    with pytest.raises(ConfigurationError, match="does not exist"):
        Model(model_data=str(tmp_path / "nope"), role=ROLE, sagemaker_session=session)
    with pytest.raises(ConfigurationError, match="does not exist in S3"):
        Model(model_data="s3://no-such-bucket/model.tar.gz", role=ROLE, sagemaker_session=session)
    with pytest.raises(ConfigurationError, match="does not exist"):
        Model(model_data=f"file://{tmp_path}/missing.tar.gz", role=ROLE, sagemaker_session=session)
    assert _resources(session) == before


def test_role_is_checked_before_model_data(session):
    with pytest.raises(ConfigurationError, match="role"):
        Model(model_data="minilm", role="not-an-arn", sagemaker_session=session)


def test_entry_point_must_exist_in_source_dir(session, tmp_path):
    with pytest.raises(ConfigurationError, match="serve.py"):
        Model(model_data="minilm", role=ROLE, entry_point="serve.py", source_dir=tmp_path, sagemaker_session=session)


def test_estimator_checks_its_arguments_and_needs_model_data_to_deploy(session):
    with pytest.raises(ConfigurationError, match="instance_type"):
        Estimator(entry_point="inference.py", role=ROLE, instance_type="ml.nope", sagemaker_session=session)
    estimator = Estimator(entry_point="inference.py", role=ROLE, instance_type="ml.g5.xlarge",
                          sagemaker_session=session)
    with pytest.raises(ConfigurationError, match="model_data"):
        estimator.deploy(initial_instance_count=1)


def test_gpu_catalogue_entries_describe_their_gpu():
    g5 = CATALOGUE["ml.g5.xlarge"]
    assert g5.has_gpu and "NVIDIA A10G 24 GiB" in g5.describe()
    assert "no GPU" in CATALOGUE["ml.m5.xlarge"].describe()
    assert CATALOGUE["ml.p4d.24xlarge"].describe().startswith("ml.p4d.24xlarge (8 x NVIDIA A100")
