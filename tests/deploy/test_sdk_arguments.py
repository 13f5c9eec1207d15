"""SDK-exact arguments: the SDK v2 signatures, a typo refused with the closest name, an SDK feature that
localmaker does not simulate refused by name, and ModelError as botocore's ClientError. Nothing here starts
an instance: every refusal happens before the first AWS call that creates something."""

from __future__ import annotations

import importlib
import inspect
import pickle
import re

import pytest
from botocore.exceptions import ClientError

from localmaker import ConfigurationError, ModelError
from localmaker.deploy import Estimator, FakePredictor, Model, Session
from localmaker.deploy.validation import base_from_name, name_from_base
from localmaker.spec.names import PLACEHOLDER_ROLE

ROLE = PLACEHOLDER_ROLE
sagemaker = pytest.importorskip("sagemaker", reason="the SageMaker SDK v2 (a dev extra) is not installed")


def _names(function) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    with Session(work_root=tmp_path_factory.mktemp("cp")) as embedded:
        yield embedded


def _resources(session: Session) -> tuple[list[str], list[str], list[str]]:
    # moto's state is per process, shared by every Session in it: compare, don't expect emptiness.
    client = session.sagemaker_client
    return ([e["EndpointName"] for e in client.list_endpoints()["Endpoints"]],
            [m["ModelName"] for m in client.list_models()["Models"]],
            [c["EndpointConfigName"] for c in client.list_endpoint_configs()["EndpointConfigs"]])


@pytest.mark.parametrize(("ours", "theirs"), [
    (Model.deploy, "sagemaker.model.Model.deploy"),
    (Estimator.deploy, "sagemaker.estimator.EstimatorBase.deploy"),
    (FakePredictor.update_endpoint, "sagemaker.base_predictor.Predictor.update_endpoint"),
])
def test_the_signatures_are_the_sdk_v2_ones_in_its_order(ours, theirs):
    module, cls, method = theirs.rsplit(".", 2)
    sdk = getattr(getattr(importlib.import_module(module), cls), method)
    assert _names(ours) == _names(sdk)


def test_model_takes_the_sdks_predictor_cls_and_refuses_a_non_class_up_front(session):
    assert "predictor_cls" in _names(Model.__init__)
    assert "predictor_cls" in _names(sagemaker.model.Model.__init__)
    with pytest.raises(ConfigurationError, match="predictor_cls must be a class"):
        Model(model_data="minilm", role=ROLE, predictor_cls="Predictor", sagemaker_session=session)


def test_a_mistyped_deploy_keyword_is_refused_with_the_closest_name(session):
    before = _resources(session)
    model = Model(model_data="minilm", role=ROLE, sagemaker_session=session)
    with pytest.raises(TypeError, match=r"Model\.deploy\(\) got an unexpected keyword argument 'endpont_name'; "
                                        r"did you mean 'endpoint_name'\?"):
        model.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpont_name="typo")
    with pytest.raises(TypeError, match="'not_an_sdk_argument'; valid keywords: .*endpoint_name"):
        model.deploy(instance_type="ml.m5.large", not_an_sdk_argument=1)
    estimator = Estimator(entry_point="inference.py", model_data="minilm", role=ROLE, instance_type="ml.m5.large",
                          sagemaker_session=session)
    with pytest.raises(TypeError, match=r"Estimator\.deploy\(\).*'intial_instance_count'; "
                                        r"did you mean 'initial_instance_count'\?"):
        estimator.deploy(intial_instance_count=1)
    with pytest.raises(TypeError, match="update_endpoint"):
        estimator.deploy(update_endpoint=True)
    assert _resources(session) == before


@pytest.mark.parametrize(("argument", "value", "fix"), [
    ("accelerator_type", "ml.eia2.medium", "GPU instance type"),
    ("data_capture_config", object(), "data capture"),
    ("explainer_config", object(), "Clarify"),
    ("inference_recommendation_id", "rec-1", "Inference Recommender"),
    ("resources", object(), "inference components"),
    ("managed_instance_scaling", {"MaxInstanceCount": 2}, "managed instance scaling"),
    ("inference_component_name", "ic", "inference components"),
    ("routing_config", {"RoutingStrategy": "RANDOM"}, "round-robin"),
    ("model_reference_arn", "arn:aws:sagemaker:us-east-1:123456789012:hub-content/x", "model_data"),
    ("endpoint_logging", True, "log_file"),
    ("endpoint_type", "InferenceComponentBased", "inference-component"),
])
def test_an_sdk_feature_localmaker_does_not_simulate_is_refused_by_name(session, argument, value, fix):
    before = _resources(session)
    model = Model(model_data="minilm", role=ROLE, sagemaker_session=session)
    with pytest.raises(ConfigurationError, match=rf"{argument}=.* is not supported by localmaker: .*{fix}"):
        model.deploy(initial_instance_count=1, instance_type="ml.m5.large", **{argument: value})
    assert _resources(session) == before


def test_only_a_model_based_endpoint_type_passes_the_checks(session):
    from sagemaker.enums import EndpointType

    model = Model(model_data="minilm", role=ROLE, sagemaker_session=session)
    with pytest.raises(ConfigurationError, match="endpoint_type=.*INFERENCE_COMPONENT_BASED.* not supported"):
        model.deploy(instance_type="ml.m5.large", endpoint_type=EndpointType.INFERENCE_COMPONENT_BASED)
    # The SDK's own enum for the default passes: the unknown instance type is then the first refusal.
    with pytest.raises(ConfigurationError, match="did you mean"):
        model.deploy(instance_type="ml.m5.larg", endpoint_type=EndpointType.MODEL_BASED)


def test_estimator_refuses_neo_and_unknown_create_model_keywords(session):
    estimator = Estimator(entry_point="inference.py", model_data="minilm", role=ROLE, instance_type="ml.m5.large",
                          sagemaker_session=session)
    with pytest.raises(ConfigurationError, match="use_compiled_model=True is not supported by localmaker: .*Neo"):
        estimator.deploy(use_compiled_model=True)
    with pytest.raises(TypeError, match="did you mean 'predictor_cls'"):
        estimator.create_model(predictor_class=FakePredictor)


def test_update_endpoint_needs_a_name_that_exists(session):
    before = _resources(session)
    model = Model(model_data="minilm", role=ROLE, sagemaker_session=session)
    with pytest.raises(ConfigurationError, match="update_endpoint=True needs endpoint_name"):
        model.deploy(instance_type="ml.m5.large", update_endpoint=True)
    with pytest.raises(ConfigurationError, match="'nowhere' does not exist, so update_endpoint=True has nothing"):
        model.deploy(instance_type="ml.m5.large", endpoint_name="nowhere", update_endpoint=True)
    assert _resources(session) == before


def test_model_error_is_botocores_client_error_with_the_containers_status():
    error = ModelError(503, "busy", "my-endpoint")
    assert isinstance(error, ClientError)
    assert error.response["Error"]["Code"] == "ModelError"
    assert error.response["OriginalStatusCode"] == 503 and error.response["OriginalMessage"] == "busy"
    assert error.operation_name == "InvokeEndpoint"
    assert str(error) == ("An error occurred (ModelError) when calling the InvokeEndpoint operation: "
                          "Received server error (503) from endpoint 'my-endpoint' with message \"busy\"")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ModelError and (copy.original_status_code, copy.original_message) == (503, "busy")


def test_names_follow_the_sdks_name_from_base_and_read_back_with_its_base_from_name():
    from sagemaker.utils import base_from_name as sdk_base_from_name

    name = name_from_base("my-training-job")
    assert re.fullmatch(r"my-training-job-\d{4}(-\d{2}){5}-\d{3}", name)
    assert sdk_base_from_name(name) == base_from_name(name) == "my-training-job"
    assert len(name_from_base("x" * 80)) == 63


def test_the_latest_training_job_reads_as_sdk_v2s_job_object_and_as_a_string():
    from localmaker.deploy.estimator import TrainingJobName

    job = TrainingJobName("train-lora-2026-12-07-14-40-00-000")
    assert job.name == job.job_name == job == "train-lora-2026-12-07-14-40-00-000"
    assert f"{job}-model.tar.gz" == "train-lora-2026-12-07-14-40-00-000-model.tar.gz"
