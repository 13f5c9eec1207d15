"""Dynamic batching in a real gunicorn instance: concurrent requests answer exactly as they would alone,
a failing request fails alone, none is lost or run twice, and a stuck model call does not wedge the worker."""

from __future__ import annotations

import base64
import io
import json
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from benchmarks.load import worker_pids
from localmaker import ModelError
from localmaker.deploy import Model
from localmaker.deploy.endpoint_view import InstanceView
from localmaker.deserializers import JSONDeserializer
from localmaker.model.artifact import pack_handler
from localmaker.serializers import JSONSerializer
from tests.e2e.conftest import ROLE

pytestmark = pytest.mark.e2e

EMBEDDING_REQUESTS: list[dict[str, Any]] = [
    {"inputs": ["short"]},
    {"inputs": ["a considerably longer text that pads every shorter row in its batch", "x"]},
    {"inputs": "one string", "parameters": {"dimensions": 16}},
    {"inputs": ["what is the capital of France?"], "parameters": {"prompt_name": "query"}},
    {"query": "who scores goals", "documents": ["Ronaldo scores goals", "Messi plays soccer", "rain"], "top_k": 2},
    {"inputs": ["not normalised"], "parameters": {"normalize": False}},
]

LEDGER_SCRIPT = """
    import json
    import os

    def model_fn(model_dir):
        return open(os.environ["LEDGER"], "a", buffering=1)

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, ledger):
        return predict_batch_fn([data], ledger)[0]

    def predict_batch_fn(items, ledger):
        if any(item.get("poison") for item in items):
            raise ValueError("a poisoned request")
        for item in items:
            ledger.write(item["id"] + "\\n")
        return [{"id": item["id"], "batch": len(items)} for item in items]

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
"""

SLOW_SCRIPT = """
    import json
    import time

    def model_fn(model_dir):
        return "slow"

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        time.sleep(data["sleep"])
        return {"slept": data["sleep"]}
"""


def _code_only_artifact(folder: Path, script: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return f"file://{pack_handler(textwrap.dedent(script), folder / 'model.tar.gz')}"


def _deploy(session: Any, model_data: str, env: dict[str, str] | None = None) -> Any:
    return Model(model_data=model_data, role=ROLE, env=env, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.m5.large",
        serializer=JSONSerializer(), deserializer=JSONDeserializer())


def _at_once(predictor: Any, requests: list[Any]) -> list[Any]:
    def one(request: Any) -> Any:
        try:
            return predictor.predict(request)
        except ModelError as exc:
            return exc

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(one, requests))


def _instance(session: Any, predictor: Any) -> InstanceView:
    return session.local_endpoint(predictor.endpoint_name).instances[0]


def _assert_same_answer(alone: dict[str, Any], batched: dict[str, Any]) -> None:
    if "results" in alone:
        assert [hit["index"] for hit in batched["results"]] == [hit["index"] for hit in alone["results"]]
        np.testing.assert_allclose([h["score"] for h in batched["results"]], [h["score"] for h in alone["results"]],
                                   atol=1e-5)
    else:
        np.testing.assert_allclose(batched["embeddings"], alone["embeddings"], atol=1e-5)
        assert batched["usage"] == alone["usage"]


def test_concurrent_embedding_requests_answer_as_they_would_alone(session, tiny_qwen3_dir):
    with _deploy(session, str(tiny_qwen3_dir)) as predictor:
        alone = [predictor.predict(request) for request in EMBEDDING_REQUESTS]
        crowd = EMBEDDING_REQUESTS * 4
        bad = {"inputs": ["too many dimensions"], "parameters": {"dimensions": 100_000}}
        answers = _at_once(predictor, [*crowd, bad])
        for index, answer in enumerate(answers[:-1]):
            _assert_same_answer(alone[index % len(EMBEDDING_REQUESTS)], answer)
        assert isinstance(answers[-1], ModelError) and answers[-1].original_status_code == 400
        log = _instance(session, predictor).log_file.read_text()
        assert "running a batch of" in log, "the concurrent requests never shared a forward pass"


def test_a_failing_request_fails_alone_and_none_is_lost_or_run_twice(session, tmp_path):
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    model_data = _code_only_artifact(tmp_path / "ledger-model", LEDGER_SCRIPT)
    with _deploy(session, model_data, {"LEDGER": str(ledger)}) as predictor:
        requests = [{"id": f"r{i:03d}"} for i in range(40)]
        requests.insert(17, {"id": "bad", "poison": True})
        answers = _at_once(predictor, requests)
    poisoned = answers.pop(17)
    assert isinstance(poisoned, ModelError) and poisoned.original_status_code == 500
    assert "a poisoned request" in poisoned.original_message
    assert [answer["id"] for answer in answers] == [f"r{i:03d}" for i in range(40)]
    assert max(answer["batch"] for answer in answers) > 1, "predict_batch_fn never saw a batch"
    recorded = ledger.read_text().split()
    assert sorted(recorded) == [f"r{i:03d}" for i in range(40)]  # each good request ran exactly once


def _pixels(encoded: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"), dtype=np.int16)


def test_concurrent_image_requests_keep_their_seeds_and_pixels(session, tiny_sd_dir):
    requests = [{"inputs": prompt, "parameters": {"seed": seed, "num_inference_steps": 4}}
                for prompt, seed in (("a red fox", 1), ("a blue sea", 2), ("green hills", 3), ("a red fox", 4))]
    with _deploy(session, str(tiny_sd_dir)) as predictor:
        alone = [predictor.predict(request) for request in requests]
        together = _at_once(predictor, requests)
    for single, batched in zip(alone, together, strict=True):
        assert batched["seeds"] == single["seeds"]
        # On the CPU a gathered batch runs request by request: exactly the pixels of a lone request.
        assert batched["images"] == single["images"]

    with _deploy(session, str(tiny_sd_dir), {"LOCALMAKER_JOINT_DIFFUSION_BATCHES": "1"}) as joint:
        shared = _at_once(joint, requests)
        log = _instance(session, joint).log_file.read_text()
    assert "in one pipeline call" in log
    for single, batched in zip(alone, shared, strict=True):
        assert batched["seeds"] == single["seeds"]
        # One joint pass rounds a few pixels' last bit differently, never more.
        difference = np.abs(_pixels(batched["images"][0]) - _pixels(single["images"][0]))
        assert difference.max() <= 1 and (difference > 0).mean() < 0.01


def test_a_stuck_model_call_times_out_and_the_worker_is_replaced(session, tmp_path):
    model_data = _code_only_artifact(tmp_path / "slow-model", SLOW_SCRIPT)
    with _deploy(session, model_data, {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "2"}) as predictor:
        master = _instance(session, predictor).pid
        workers_before = set(worker_pids(master))
        with pytest.raises(ClientError) as timed_out:
            session.sagemaker_runtime_client.invoke_endpoint(
                EndpointName=predictor.endpoint_name, ContentType="application/json", Body=json.dumps({"sleep": 60}))
        assert timed_out.value.response["Error"]["Code"] == "ModelError"
        assert timed_out.value.response["OriginalStatusCode"] == 504
        assert "SAGEMAKER_MODEL_SERVER_TIMEOUT=2s" in timed_out.value.response["OriginalMessage"]

        deadline = time.monotonic() + 60
        while True:  # the stuck worker retires; gunicorn starts another, which loads the model again
            try:
                assert predictor.predict({"sleep": 0}) == {"slept": 0}
                break
            except ModelError as exc:
                assert exc.original_status_code in (503, 504), exc
                assert time.monotonic() < deadline, "the instance never recovered from the stuck call"
                time.sleep(0.5)
        workers_after = set(worker_pids(master))
        assert workers_after and workers_after.isdisjoint(workers_before)
