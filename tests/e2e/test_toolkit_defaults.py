"""The toolkits' request defaults through the real path: boto3 invoke_endpoint, control plane, gunicorn.

boto3 sends no Accept header when ``Accept`` is not given, and the control plane forwards none; the
instance then hands output_fn the default accept, as the SageMaker inference toolkit's
Transformer.transform does (tests/local_endpoint/test_toolkit_defaults.py covers each default in-process).
"""

from __future__ import annotations

import json
import textwrap

import pytest
from botocore.exceptions import ClientError

from localmaker.deploy import Model
from localmaker.model.artifact import pack_handler
from tests.e2e.conftest import ROLE

pytestmark = pytest.mark.e2e

# The shape of the inference.py scripts published for SageMaker's PyTorch container: JSON only.
PUBLIC_STYLE_SCRIPT = textwrap.dedent("""
    import json

    def model_fn(model_dir):
        return {"scale": 3}

    def input_fn(request_body, request_content_type):
        if request_content_type == "application/json":
            return json.loads(request_body)
        raise ValueError(f"Unsupported content type: {request_content_type}")

    def predict_fn(input_data, model):
        return {"scaled": [x * model["scale"] for x in input_data["values"]]}

    def output_fn(prediction, response_content_type):
        if response_content_type == "application/json":
            return json.dumps(prediction)
        raise ValueError(f"Unsupported accept type: {response_content_type}")
""")

DEFAULT_CODECS_SCRIPT = textwrap.dedent("""
    def model_fn(model_dir):
        return None

    def predict_fn(data, model):
        return data
""")


def test_a_json_only_script_answers_invoke_endpoint_without_accept(session, tmp_path):
    model = Model(model_data=str(pack_handler(PUBLIC_STYLE_SCRIPT, tmp_path / "model.tar.gz")), role=ROLE,
                  sagemaker_session=session)
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="json-only")
    try:
        runtime = session.sagemaker_runtime_client
        for accept in ({}, {"Accept": "*/*"}):
            answer = runtime.invoke_endpoint(EndpointName="json-only", Body=json.dumps({"values": [1, 2]}),
                                             ContentType="application/json", **accept)
            assert answer["ContentType"] == "application/json"
            assert json.loads(answer["Body"].read()) == {"scaled": [3, 6]}
        # without ContentType the header is absent, and input_fn gets None (utils.retrieve_content_type_header)
        with pytest.raises(ClientError) as refused:
            runtime.invoke_endpoint(EndpointName="json-only", Body=json.dumps({"values": [1]}))
        assert refused.value.response["Error"]["Code"] == "ModelError"
        assert "Unsupported content type: None" in refused.value.response["Error"]["Message"]
    finally:
        predictor.delete_endpoint()


def test_sagemaker_default_invocations_accept_from_the_model_environment(session, tmp_path):
    model = Model(model_data=str(pack_handler(DEFAULT_CODECS_SCRIPT, tmp_path / "model.tar.gz")), role=ROLE,
                  sagemaker_session=session, env={"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"})
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="csv-default")
    try:
        answer = session.sagemaker_runtime_client.invoke_endpoint(
            EndpointName="csv-default", Body=b"[[1, 2], [3, 4]]", ContentType="application/json")
        assert answer["ContentType"] == "text/csv"
        assert answer["Body"].read() == b"1,2\n3,4\n"
    finally:
        predictor.delete_endpoint()
