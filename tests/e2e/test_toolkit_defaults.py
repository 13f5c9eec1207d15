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
from tests.local_endpoint.test_toolkit_defaults import PUBLIC_STYLE_SCRIPT as PUBLIC_STYLE_SOURCE

pytestmark = pytest.mark.e2e

PUBLIC_STYLE_SCRIPT = textwrap.dedent(PUBLIC_STYLE_SOURCE)

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
