"""SDK-exact behaviour through a real control plane and real gunicorn instances: ``predictor_cls``, updates
of a live endpoint (``FakePredictor.update_endpoint`` and ``Model.deploy(update_endpoint=True)``) while
traffic keeps being answered, ModelError caught as botocore's ClientError, and an estimator's endpoint
named after its training job."""

from __future__ import annotations

import contextlib
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localmaker import ConfigurationError, ModelError
from localmaker.deploy import Estimator, FakePredictor, Model, Session
from localmaker.deserializers import JSONDeserializer
from localmaker.serializers import JSONSerializer
from tests.e2e.conftest import ROLE, instance_pids
from tests.script_archives import code_only_archive

pytestmark = pytest.mark.e2e
sagemaker = pytest.importorskip("sagemaker", reason="the SageMaker SDK v2 (a dev extra) is not installed")

# Answers which model version serves it (the VERSION of the model's env); {"fail": ...} raises in predict_fn.
HANDLER = """
    import json
    import os

    def model_fn(model_dir):
        return os.environ.get("VERSION", "1")

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, version):
        if data.get("fail"):
            raise ValueError(f"refusing {data['fail']}")
        return {"version": version}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
"""


class MyPredictor(FakePredictor):
    """A user's own predictor class, as SDK users subclass sagemaker.predictor.Predictor."""

    def version(self) -> str:
        return str(self.predict({"x": 1})["version"])


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"file://{code_only_archive(tmp_path_factory.mktemp('sdk-exact'), HANDLER)}"


def _model(session: Session, archive: str, version: str, **kwargs: Any) -> Model:
    return Model(model_data=archive, role=ROLE, env={"VERSION": version, "SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
                 sagemaker_session=session, **kwargs)


@contextlib.contextmanager
def steady_traffic(predictor: FakePredictor) -> Iterator[list[str]]:
    """Predicts in a loop while the block runs; the versions seen come back, and any failure fails the test."""
    seen: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                seen.append(str(predictor.predict({"x": 1})["version"]))
            except BaseException as exc:  # noqa: BLE001 - any failure is what the test reports
                failures.append(exc)
                return

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        yield seen
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not failures, f"a request failed during the update: {failures[0]!r}"


def test_deploy_returns_the_sdks_own_predictor_cls(session, archive, started_groups):
    from sagemaker.deserializers import JSONDeserializer as SdkJSONDeserializer
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import JSONSerializer as SdkJSONSerializer

    predictor = _model(session, archive, "1", predictor_cls=Predictor).deploy(
        initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="sdk-predictor-cls",
        serializer=SdkJSONSerializer(), deserializer=SdkJSONDeserializer())
    started_groups.update(instance_pids(session, "sdk-predictor-cls"))
    try:
        assert type(predictor) is Predictor
        assert predictor.endpoint_name == "sdk-predictor-cls"
        assert predictor.predict({"x": 1}) == {"version": "1"}
    finally:
        session.sagemaker_client.delete_endpoint(EndpointName="sdk-predictor-cls")


def test_a_user_subclass_of_fake_predictor_is_returned_and_errors_are_client_errors(session, archive,
                                                                                    started_groups):
    with _model(session, archive, "1", predictor_cls=MyPredictor).deploy(
            initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="own-predictor-cls",
            serializer=JSONSerializer(), deserializer=JSONDeserializer()) as predictor:
        started_groups.update(instance_pids(session, "own-predictor-cls"))
        assert type(predictor) is MyPredictor
        assert predictor.version() == "1"
        assert predictor.model_name == "own-predictor-cls"  # so that leaving the block deletes the model too

        # The cloud's idiom, unchanged: botocore's ClientError with the code and the container's answer.
        try:
            predictor.predict({"fail": "this request"})
            pytest.fail("the handler raised, so predict() must raise")
        except ClientError as err:
            assert err.response["Error"]["Code"] == "ModelError"
            assert err.response["OriginalStatusCode"] == 500
            assert "refusing this request" in err.response["OriginalMessage"]
            assert isinstance(err, ModelError) and err.original_status_code == 500  # the old idiom still works

        # A second deploy to the same name, without update_endpoint, leaves the running endpoint alone.
        models_before = session.sagemaker_client.list_models(MaxResults=100)["Models"]
        with pytest.raises(ConfigurationError, match="'own-predictor-cls' already exists: pass update_endpoint=True"):
            _model(session, archive, "2").deploy(instance_type="ml.m5.large", endpoint_name="own-predictor-cls")
        assert session.sagemaker_client.list_models(MaxResults=100)["Models"] == models_before
        assert predictor.version() == "1"


def test_update_endpoint_moves_to_a_new_config_while_traffic_is_answered(session, archive, started_groups):
    predictor = _model(session, archive, "1").deploy(
        initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="updated-in-place",
        serializer=JSONSerializer(), deserializer=JSONDeserializer())
    client = session.sagemaker_client
    try:
        started_groups.update(instance_pids(session, "updated-in-place"))
        first_config = client.describe_endpoint(EndpointName="updated-in-place")["EndpointConfigName"]
        with steady_traffic(predictor) as seen:
            predictor.update_endpoint(initial_instance_count=2, instance_type="ml.m5.large",
                                      tags={"team": "search"})
        started_groups.update(instance_pids(session, "updated-in-place"))
        assert len(seen) > 0 and set(seen) == {"1"}

        described = client.describe_endpoint(EndpointName="updated-in-place")
        assert described["EndpointStatus"] == "InService"
        new_config = described["EndpointConfigName"]
        assert new_config != first_config and sagemaker.utils.base_from_name(new_config) == first_config
        config = client.describe_endpoint_config(EndpointConfigName=new_config)
        assert [(v["ModelName"], v["InitialInstanceCount"]) for v in config["ProductionVariants"]] == \
            [("updated-in-place", 2)]
        assert client.list_tags(ResourceArn=config["EndpointConfigArn"])["Tags"] == [{"Key": "team", "Value": "search"}]
        assert len(session.local_endpoint("updated-in-place").instances) == 2

        # Without arguments the SDK copies the current variants and tags into the next config.
        predictor.update_endpoint(kms_key="alias/local")
        again = client.describe_endpoint_config(
            EndpointConfigName=client.describe_endpoint(EndpointName="updated-in-place")["EndpointConfigName"])
        assert again["EndpointConfigName"] != new_config and again["KmsKeyId"] == "alias/local"
        assert again["ProductionVariants"] == config["ProductionVariants"]
        assert client.list_tags(ResourceArn=again["EndpointConfigArn"])["Tags"] == [{"Key": "team", "Value": "search"}]

        with pytest.raises(ConfigurationError, match="both initial_instance_count and instance_type"):
            predictor.update_endpoint(initial_instance_count=1)
        with pytest.raises(ConfigurationError, match="max_instance_count=4 is not supported by localmaker"):
            predictor.update_endpoint(initial_instance_count=1, instance_type="ml.m5.large", max_instance_count=4)
        assert predictor.predict({"x": 1}) == {"version": "1"}
    finally:
        predictor.delete_endpoint()


def test_deploy_with_update_endpoint_moves_a_live_endpoint_to_the_new_model(session, archive, started_groups):
    first = _model(session, archive, "1").deploy(
        initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="redeployed",
        serializer=JSONSerializer(), deserializer=JSONDeserializer())
    try:
        started_groups.update(instance_pids(session, "redeployed"))
        with steady_traffic(first) as seen:
            second = _model(session, archive, "2").deploy(
                initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="redeployed",
                update_endpoint=True, serializer=JSONSerializer(), deserializer=JSONDeserializer())
        started_groups.update(instance_pids(session, "redeployed"))
        assert seen and set(seen) <= {"1", "2"}
        assert second.predict({"x": 1}) == {"version": "2"}
        assert first.predict({"x": 1}) == {"version": "2"}  # the old predictor follows its endpoint
        described = session.sagemaker_client.describe_endpoint(EndpointName="redeployed")
        config = session.sagemaker_client.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
        assert config["ProductionVariants"][0]["ModelName"] == second.model_name != "redeployed"
    finally:
        first.delete_endpoint()


def test_an_estimators_endpoint_is_named_after_its_training_job(session, tmp_path, started_groups):
    source = tmp_path / "src"
    source.mkdir()
    # One script trains (run as __main__) and serves (its hooks), as SDK users write them.
    (source / "job.py").write_text(textwrap.dedent("""
        import os
        from pathlib import Path

        def model_fn(model_dir):
            return Path(model_dir, "trained.txt").read_text()

        def predict_fn(data, model):
            return {"trained": model}

        if __name__ == "__main__":
            Path(os.environ["SM_MODEL_DIR"], "trained.txt").write_text("yes")
    """))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.txt").write_text("one row\n")
    estimator = Estimator(entry_point="job.py", source_dir=source, role=ROLE, instance_type="ml.m5.large",
                          base_job_name="named-after-job", sagemaker_session=session)
    estimator.fit(f"file://{tmp_path / 'data'}", logs=False)
    job = estimator.latest_training_job
    assert job is not None
    predictor = estimator.deploy(initial_instance_count=1, serializer=JSONSerializer(),
                                 deserializer=JSONDeserializer())
    try:
        started_groups.update(instance_pids(session, predictor.endpoint_name))
        base_from_name = sagemaker.utils.base_from_name
        assert base_from_name(predictor.endpoint_name) == base_from_name(job) == "named-after-job"
        assert predictor.model_name == predictor.endpoint_name  # the SDK gives both the same default name
        assert predictor.predict({"x": 1}) == {"trained": "yes"}
    finally:
        predictor.delete_endpoint()

