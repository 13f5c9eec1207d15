"""Fuzzing the real container with schemathesis: no generated request may produce a 5xx or a hang.

The requests come from the OpenAPI document (``localmaker openapi``), in both of schemathesis' modes:
positive (valid by the document) and negative (each one breaks it somewhere). They go to a real
gunicorn instance serving tiny-qwen3, and one serving tiny-sd, over HTTP. Bounded: a fixed number of
examples per operation, derandomized so each run sends the same requests, and a timeout per request
that counts as a failure.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from localmaker.control_plane.instance_process import InstanceProcess
from localmaker.inference import CODE_DIR
from localmaker.local_endpoint.openapi_document import openapi_document

REQUEST_TIMEOUT_S = 60  # a request not answered by then is hanging
SCHEMA = schemathesis.openapi.from_dict(openapi_document())
# Every image over 64x64 is refused by the pixel budget before any work, so the fuzzer cannot make this
# machine paint 1024x1024 images for minutes; the requests themselves are still the generated ones.
SD_MAX_PIXELS = 2 * 64 * 64


def _image_requests_with_few_steps() -> schemathesis.BaseSchema:
    """The document as tiny-sd's container reads it, with every valid request naming at most 3 steps.

    Without that, the fuzzer's favourite valid request, ``{"inputs": "0"}``, runs the default 30 steps,
    and its favourite step count is the maximum, 150: seconds per request on a CPU that only repeat the
    same code path. Embedding and search requests, valid for the other model, are left to negative mode
    here, which uses the whole document: each of its requests is broken somewhere, so the handler refuses
    it before any step runs.
    """
    document = openapi_document()
    schemas = document["components"]["schemas"]
    schemas["InvocationRequest"] = {"$ref": "#/components/schemas/ImageRequest"}
    schemas["ImageRequest"]["required"] = ["inputs", "parameters"]
    parameters = schemas["ImageParameters"]
    parameters["type"], parameters["required"] = "object", ["num_inference_steps"]
    parameters["properties"]["num_inference_steps"].update(type="integer", maximum=3)
    return schemathesis.openapi.from_dict(document)


# (model, operation, mode, schema, examples). The GET operations take no input: nothing to break, and
# little to vary (headers), so a few positive examples each.
CAMPAIGNS = [
    *[(model, path, "GET", GenerationMode.POSITIVE, SCHEMA, 5)
      for model in ("tiny-qwen3", "tiny-sd") for path in ("/ping", "/openapi.json")],
    ("tiny-qwen3", "/invocations", "POST", GenerationMode.POSITIVE, SCHEMA, 50),
    ("tiny-qwen3", "/invocations", "POST", GenerationMode.NEGATIVE, SCHEMA, 50),
    ("tiny-sd", "/invocations", "POST", GenerationMode.POSITIVE, _image_requests_with_few_steps(), 25),
    ("tiny-sd", "/invocations", "POST", GenerationMode.NEGATIVE, SCHEMA, 30),
]


@pytest.fixture(scope="module")
def containers(tiny_qwen3_dir: Path, tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[dict[str, str]]:
    folder = tmp_path_factory.mktemp("fuzzed-containers")
    common = {"LOCALMAKER_CODE_DIR": str(CODE_DIR), "LOCALMAKER_CACHE_DIR": str(folder / "cache"),
              "LOCALMAKER_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    instances = {
        "tiny-qwen3": InstanceProcess("fuzz-qwen3", tiny_qwen3_dir, folder / "qwen3.log", common),
        "tiny-sd": InstanceProcess("fuzz-sd", tiny_sd_dir, folder / "sd.log",
                                   {**common, "LOCALMAKER_MAX_PIXELS": str(SD_MAX_PIXELS)}),
    }
    try:
        for instance in instances.values():
            instance.start()
        deadline = time.monotonic() + 180
        for instance in instances.values():
            while not instance.ping().healthy:
                assert instance.exited() is None, f"{instance.instance_id} exited:\n{instance.log_tail()}"
                assert time.monotonic() < deadline, f"{instance.instance_id} never healthy:\n{instance.log_tail()}"
                time.sleep(0.3)
        yield {model: instance.url for model, instance in instances.items()}
    finally:
        for instance in instances.values():
            instance.stop()


def fuzz(schema: schemathesis.BaseSchema, base_url: str, path: str, method: str, mode: GenerationMode,
         max_examples: int) -> Counter[int]:
    """Send up to ``max_examples`` generated requests; returns how many got each status."""
    statuses: Counter[int] = Counter()
    http = requests.Session()

    @settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=schema[path][method].as_strategy(generation_mode=mode))
    def one(case: schemathesis.Case) -> None:
        try:
            response = case.call(base_url=base_url, session=http, timeout=REQUEST_TIMEOUT_S)
        except requests.Timeout as exc:
            raise AssertionError(f"no answer within {REQUEST_TIMEOUT_S} s:\n{case.as_curl_command()}") from exc
        statuses[response.status_code] += 1
        assert response.status_code < 500, (f"{response.status_code} {response.text[:500]}\n"
                                            f"{case.as_curl_command()}")
        if response.status_code >= 400:  # every refusal is the documented error body, never a traceback
            error = json.loads(response.content)["error"]
            assert set(error) == {"code", "message"} and "Traceback" not in error["message"], error

    one()
    return statuses


@pytest.mark.parametrize("model, path, method, mode, schema, examples", CAMPAIGNS,
                         ids=[f"{c[0]}-{c[2]} {c[1]}-{c[3].value}" for c in CAMPAIGNS])
def test_no_generated_request_gets_a_5xx_or_hangs(containers, model, path, method, mode, schema, examples):
    statuses = fuzz(schema, containers[model], path, method, mode, examples)
    assert sum(statuses.values()) > 0
    print(f"\nfuzzed {model} {method} {path} ({mode.value}): {sum(statuses.values())} requests, "
          f"statuses {dict(sorted(statuses.items()))}")
