"""The whole path for the embedding model: pack, upload to moto S3, gunicorn instances, predict."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from pathlib import Path

import boto3
import numpy as np
import pytest
import torch
from botocore.exceptions import ClientError

from localmaker import ModelError
from localmaker.deploy import FakePredictor, Model
from localmaker.deserializers import JSONDeserializer, NumpyDeserializer
from localmaker.local_endpoint import gpu_requirement
from localmaker.serializers import JSONSerializer
from tests.e2e.conftest import ROLE, instance_pids
from tests.process_probe import group_members

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def qwen_endpoint(session, tiny_qwen3_dir, started_groups):
    # A GPU type on a machine without CUDA must say that it falls back to the CPU.
    fallback = (contextlib.nullcontext() if torch.cuda.is_available()
                else pytest.warns(UserWarning, match="this machine has none: the endpoint runs on the CPU"))
    # Said once per process: an earlier test in this one may already have deployed a GPU type.
    with pytest.MonkeyPatch.context() as patch, fallback:
        patch.setattr(gpu_requirement, "_warned", threading.Event())
        predictor = Model(model_data="tiny-qwen3", role=ROLE, sagemaker_session=session).deploy(
            initial_instance_count=2, instance_type="ml.g5.xlarge",
            serializer=JSONSerializer(), deserializer=JSONDeserializer())
    started_groups.update(instance_pids(session, predictor.endpoint_name))
    yield predictor
    predictor.delete_endpoint()


def test_deploy_records_real_state_in_moto(session, qwen_endpoint):
    sagemaker = session.sagemaker_client
    described = sagemaker.describe_endpoint(EndpointName=qwen_endpoint.endpoint_name)
    assert described["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.g5.xlarge"
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 2
    model = sagemaker.describe_model(ModelName=qwen_endpoint.model_name)
    url = model["PrimaryContainer"]["ModelDataUrl"]
    bucket, key = url.removeprefix("s3://").split("/", 1)
    head = session.s3_client.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] > 10_000
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"


def test_embeddings_are_unit_vectors_with_matryoshka_dimensions(qwen_endpoint):
    answer = qwen_endpoint.predict({"inputs": ["Ronaldo Plays for portugal", "Aegentina won FIFA worldcup"]})
    vectors = np.array(answer["embeddings"])
    assert vectors.shape == (2, answer["dimensions"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert answer["usage"]["tokens"] > 4

    short = qwen_endpoint.predict({"inputs": "Ronaldo Plays for portugal", "parameters": {"dimensions": 8}})
    truncated = np.array(short["embeddings"][0])
    assert truncated.shape == (8,)
    expected = vectors[0, :8] / np.linalg.norm(vectors[0, :8])
    np.testing.assert_allclose(truncated, expected, atol=1e-5)


def test_npy_accept_returns_a_float32_array(session, qwen_endpoint):
    numpy_predictor = FakePredictor(qwen_endpoint.endpoint_name, session, JSONSerializer(), NumpyDeserializer())
    array = numpy_predictor.predict({"inputs": ["a", "b", "c"]})
    assert numpy_predictor.last_response_headers["Content-Type"] == "application/x-npy"
    assert array.dtype == np.float32 and array.shape[0] == 3
    np.testing.assert_allclose(np.linalg.norm(array, axis=1), 1.0, atol=1e-5)


def test_search_ranks_documents_by_cosine(qwen_endpoint):
    documents = ["Ronaldo scores goals grater than messi", "Ronaldo Plays for portugal",
                 "Leonardo messi plays soccer", "Aegentina won FIFA worldcup"]
    answer = qwen_endpoint.predict({"query": "Is ronaldo better than messi", "documents": documents, "top_k": 3})
    results = answer["results"]
    assert [r["rank"] for r in results] == [1, 2, 3]
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(documents[r["index"]] == r["text"] for r in results)


def _invocation_counts(log_files: list[Path], expected_total: int | None = None) -> list[int]:
    """Access-log lines are written just after each response, so wait until the counts settle."""
    deadline = time.monotonic() + 5
    counts: list[int] = []
    while time.monotonic() < deadline:
        latest = [f.read_text().count("POST /invocations") for f in log_files]
        settled = latest == counts and (expected_total is None or sum(latest) >= expected_total)
        if settled:
            break
        counts = latest
        time.sleep(0.2)
    return counts


def test_requests_round_robin_across_both_instances(session, qwen_endpoint):
    instances = session.local_endpoint(qwen_endpoint.endpoint_name).instances
    assert len(instances) == 2 and len({i.url for i in instances}) == 2
    logs = [i.log_file for i in instances]
    predictor = FakePredictor(qwen_endpoint.endpoint_name, session, JSONSerializer(), JSONDeserializer())
    before = _invocation_counts(logs)
    for _ in range(4):
        predictor.predict({"inputs": "hello"})
    after = _invocation_counts(logs, expected_total=sum(before) + 4)
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 2]


@pytest.mark.parametrize(("body", "headers", "status", "fragment"), [
    (b"{not json", {"ContentType": "application/json"}, 400, "JSON"),
    (b"a,b", {"ContentType": "text/csv"}, 415, "application/json"),
    (json.dumps({"inputs": "x"}).encode(), {"Accept": "image/gif"}, 406, "application/json"),
    (json.dumps({"inputs": []}).encode(), {}, 400, "inputs"),
    (json.dumps({"inputs": [1, 2]}).encode(), {}, 400, "inputs"),
    (b"[" + b"1," * (3 * 1024 * 1024) + b"1]", {}, 413, "6"),
])
def test_bad_input_gets_a_4xx_with_a_message_and_the_endpoint_keeps_serving(
        qwen_endpoint, body, headers, status, fragment):
    with pytest.raises(ModelError) as caught:
        qwen_endpoint.predict(body, initial_args={"ContentType": "application/json", **headers})
    assert caught.value.original_status_code == status
    assert fragment in caught.value.original_message
    assert "Traceback" not in caught.value.original_message
    assert qwen_endpoint.predict({"inputs": "still serving"})["embeddings"]


def test_boto3_invoke_endpoint_goes_through_the_control_plane(session, qwen_endpoint):
    runtime = boto3.client("sagemaker-runtime", endpoint_url=session.endpoint_url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    answer = runtime.invoke_endpoint(EndpointName=qwen_endpoint.endpoint_name, ContentType="application/json",
                                     Body=json.dumps({"inputs": ["hi"]}))
    assert answer["ContentType"] == "application/json"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    vectors = json.loads(answer["Body"].read())["embeddings"]
    assert len(vectors) == 1
    as_npy = runtime.invoke_endpoint(EndpointName=qwen_endpoint.endpoint_name, ContentType="application/json",
                                     Accept="application/x-npy", Body=json.dumps({"inputs": ["hi"]}))
    assert as_npy["ContentType"] == "application/x-npy"
    np.testing.assert_allclose(np.load(io.BytesIO(as_npy["Body"].read()), allow_pickle=False), vectors, atol=1e-6)
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName=qwen_endpoint.endpoint_name, ContentType="application/json",
                                Body=b"{broken")
    assert caught.value.response["Error"]["Code"] == "ModelError"
    assert caught.value.response["OriginalStatusCode"] == 400
    assert caught.value.response["Error"]["Message"].startswith("Received client error (400) from primary with message")
    assert caught.value.response["LogStreamArn"].endswith(f"/aws/sagemaker/Endpoints/{qwen_endpoint.endpoint_name}")


def test_delete_endpoint_reaps_every_process(session, tiny_qwen3_dir):
    predictor = Model(model_data=str(tiny_qwen3_dir), role=ROLE, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.m5.xlarge")
    groups = instance_pids(session, predictor.endpoint_name)
    assert all(group_members(g) for g in groups)
    predictor.delete_endpoint()
    deadline = time.monotonic() + 15
    while any(group_members(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(group_members(g) for g in groups)
    with pytest.raises(ClientError) as caught:
        session.sagemaker_client.describe_endpoint(EndpointName=predictor.endpoint_name)
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_an_endpoint_on_the_onnxruntime_backend_serves_sentence_transformers_vectors(session, minilm_dir):
    pytest.importorskip("onnxruntime")
    from sentence_transformers import SentenceTransformer

    texts = ["ok", "A man is eating food.", "semantic search over long documents " * 40]
    predictor = Model(model_data="minilm", role=ROLE, sagemaker_session=session,
                      env={"LOCALMAKER_EMBEDDING_BACKEND": "onnxruntime"}).deploy(
        initial_instance_count=1, instance_type="ml.c5.xlarge",
        serializer=JSONSerializer(), deserializer=JSONDeserializer())
    try:
        served = np.array(predictor.predict({"inputs": texts})["embeddings"])
        log = session.local_endpoint(predictor.endpoint_name).instances[0].log_file.read_text()
    finally:
        predictor.delete_endpoint()
    expected = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.sum(served * expected, axis=1).min() >= 0.9999
    assert "embedding forward pass on onnxruntime" in log and "checked against PyTorch" in log
