"""The OpenAPI document against the real container app serving the built-in handlers.

Every answer below comes from the real Flask app with the real tiny models, and must be documented
(path, status, content type) and valid against the document's schema; the request schemas must accept
exactly what the handlers accept. So the document cannot drift from the code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from localmaker.inference import CODE_DIR
from localmaker.local_endpoint.app import create_app
from localmaker.local_endpoint.openapi_document import openapi_document
from localmaker.local_endpoint.settings import EndpointSettings

DOCUMENT = openapi_document()
JSON = "application/json"


def _validator(schema: dict[str, Any]) -> OAS31Validator:
    """The schema with the document's components beside it, so its ``#/components/...`` refs resolve."""
    return OAS31Validator({**schema, "components": DOCUMENT["components"]})


def _component(name: str) -> OAS31Validator:
    return _validator({"$ref": f"#/components/schemas/{name}"})


def assert_documented(response: Any, path: str, method: str = "post") -> None:
    """The answer's status and content type are in the document, and a JSON body fits its schema."""
    responses = DOCUMENT["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method.upper()} {path} answered {status}, which the document does not list"
    content_type = response.content_type.split(";")[0]
    content = responses[status]["content"]
    assert content_type in content, f"{path} {status} answered {content_type}; documented: {sorted(content)}"
    if content_type == JSON:
        _validator(content[content_type]["schema"]).validate(response.get_json())
    else:
        assert response.data, "a binary answer has a body"


def _app(model_dir, code_dir=CODE_DIR):
    app = create_app(EndpointSettings(model_dir=model_dir, code_dir=code_dir), load_in_background=False)
    app.testing = False  # the 500 path must go through the error handler, as in production
    return app.test_client()


@pytest.fixture(scope="module")
def qwen(tiny_qwen3_dir):
    return _app(tiny_qwen3_dir)


@pytest.fixture(scope="module")
def sd(tiny_sd_dir):
    return _app(tiny_sd_dir)


def test_the_document_is_valid_openapi_3():
    validate_spec(DOCUMENT)
    assert DOCUMENT["openapi"] == "3.1.0"
    assert set(DOCUMENT["paths"]) == {"/ping", "/invocations", "/openapi.json"}
    assert "not part of SageMaker" in DOCUMENT["paths"]["/openapi.json"]["get"]["summary"]


EMBEDDING_REQUESTS = [
    {"inputs": ["Ronaldo Plays for portugal", "Aegentina won FIFA worldcup"]},
    {"inputs": "one text", "parameters": {"dimensions": 8, "prompt_name": "query", "normalize": False}},
    {"query": "who plays soccer", "documents": ["Leonardo messi plays soccer", "Ronaldo Plays for portugal"],
     "top_k": 1},
]


@pytest.mark.parametrize("body", EMBEDDING_REQUESTS)
def test_embedding_answers_fit_the_document(qwen, body):
    _component("InvocationRequest").validate(body)
    response = qwen.post("/invocations", json=body)
    assert response.status_code == 200
    assert_documented(response, "/invocations")


def test_embeddings_as_npy_are_documented(qwen):
    response = qwen.post("/invocations", json={"inputs": "x"}, headers={"Accept": "application/x-npy"})
    assert response.status_code == 200
    assert_documented(response, "/invocations")


@pytest.mark.parametrize(("body", "accept"), [
    ({"inputs": "a lighthouse", "parameters": {"num_inference_steps": 2, "seed": 3, "num_images_per_prompt": 2,
                                               "negative_prompt": "blurry", "scheduler": "ddim"}}, JSON),
    ({"inputs": "a lighthouse " * 40, "parameters": {"num_inference_steps": 1}}, JSON),  # truncation warning
    ({"inputs": "a lighthouse", "parameters": {"num_inference_steps": 1, "seed": 3}}, "image/png"),
    ({"inputs": "a lighthouse", "parameters": {"num_inference_steps": 1, "seed": 3}}, "image/jpeg"),
])
def test_image_answers_fit_the_document(sd, body, accept):
    _component("InvocationRequest").validate(body)
    response = sd.post("/invocations", json=body, headers={"Accept": accept})
    assert response.status_code == 200 and response.content_type == accept
    assert_documented(response, "/invocations")
    if accept == JSON:
        answer = response.get_json()
        assert len(answer["images"]) == len(answer["seeds"]) == answer["parameters"]["num_images_per_prompt"]


def test_ping_and_the_document_route_fit_the_document(qwen):
    ping = qwen.get("/ping")
    assert ping.status_code == 200
    assert_documented(ping, "/ping", "get")
    served = qwen.get("/openapi.json")
    assert served.status_code == 200 and served.content_type == JSON
    assert served.get_json() == DOCUMENT
    assert_documented(served, "/openapi.json", "get")


@pytest.mark.parametrize(("request_args", "status"), [
    (dict(data=b'{"inputs": ', content_type=JSON), 400),
    (dict(data=b"", content_type=JSON), 400),
    (dict(json={"inputs": "a", "top-k": 3}), 400),
    (dict(json={"inputs": "a", "parameters": {"dimensions": 100000}}), 400),
    (dict(data=b"a,b", content_type="text/csv"), 415),
    (dict(json={"inputs": "a"}, headers={"Accept": "image/gif"}), 406),
    (dict(data=b" " * (6 * 1024 * 1024 + 1), content_type=JSON), 413),
])
def test_error_answers_fit_the_error_schema(qwen, request_args, status):
    response = qwen.post("/invocations", **request_args)
    assert response.status_code == status
    assert_documented(response, "/invocations")


def test_a_model_that_failed_to_load_answers_documented_503s_and_still_serves_the_document(tmp_path):
    client = _app(tmp_path)  # no config.json: the built-in model_fn raises
    ping = client.get("/ping")
    assert ping.status_code == 503 and ping.get_json()["error"]["code"] == "ModelLoadFailed"
    assert_documented(ping, "/ping", "get")
    assert_documented(client.post("/invocations", json={"inputs": "a"}), "/invocations")
    assert client.get("/openapi.json").get_json() == DOCUMENT  # the document needs no model


def test_a_handler_failure_answers_the_documented_500(tmp_path):
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "inference.py").write_text(textwrap.dedent("""
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            raise RuntimeError("boom")
    """))
    response = _app(tmp_path, code_dir).post("/invocations", json={})
    assert response.status_code == 500
    assert_documented(response, "/invocations")


# The document's request schemas against the handlers: valid exactly when the model answers 200. Values
# the schema cannot know (a dimension above the model's, a LoRA scale without a LoRA) are left out.
EMBEDDING_VERDICTS = [
    ({"inputs": "a", "parameters": None}, True),
    ({"inputs": ["a"], "parameters": {"dimensions": None, "prompt_name": None}}, True),
    ({"query": "q", "documents": ["d"], "parameters": {"normalize": True}}, True),
    ({"inputs": []}, False),
    ({"inputs": [""]}, False),
    ({"inputs": "  "}, False),
    ({"inputs": [1]}, False),
    ({"inputs": "a", "top_k": 1}, False),
    ({"inputs": "a", "parameters": {"dimension": 8}}, False),
    ({"inputs": "a", "parameters": {"dimensions": 0}}, False),
    ({"inputs": "a", "parameters": {"normalize": None}}, False),
    ({"query": "q", "documents": ["d"], "top_k": 0}, False),
    ({"query": "q", "documents": ["d"], "top_k": None}, False),
    ({"query": "q", "documents": []}, False),
    ({"query": "q", "documents": ["d"], "parameters": {"normalize": False}}, False),
    ({"query": "q", "inputs": "a", "documents": ["d"]}, False),
    ({}, False),
    ([], False),
]
IMAGE_VERDICTS = [
    ({"inputs": "a", "parameters": {"num_inference_steps": 1, "seed": 0, "guidance_scale": 0, "height": 64,
                                    "width": 64, "scheduler": "euler", "negative_prompt": None}}, True),
    ({"inputs": "a", "parameters": {"num_inference_steps": 1, "scheduler": None, "seed": 2**32 - 1}}, True),
    ({"inputs": "a", "parameters": {"num_inference_steps": 0}}, False),
    ({"inputs": "a", "parameters": {"num_inference_steps": 151}}, False),
    ({"inputs": "a", "parameters": {"num_inference_steps": True}}, False),
    ({"inputs": "a", "parameters": {"height": 65}}, False),
    ({"inputs": "a", "parameters": {"width": 1032}}, False),
    ({"inputs": "a", "parameters": {"guidance_scale": 30.5}}, False),
    ({"inputs": "a", "parameters": {"seed": -1}}, False),
    ({"inputs": "a", "parameters": {"seed": 2**32}}, False),
    ({"inputs": "a", "parameters": {"num_images_per_prompt": 9}}, False),
    ({"inputs": "a", "parameters": {"scheduler": "karras"}}, False),
    ({"inputs": "a", "parameters": {"steps": 5}}, False),
    ({"inputs": "a", "parameters": []}, False),
    ({"inputs": ["a"]}, False),
    ({"inputs": ""}, False),
    ({"prompt": "a"}, False),
]


def _verdicts(client, schema: OAS31Validator, cases: list[tuple[Any, bool]]) -> list[tuple[str, bool, int]]:
    disagreements = []
    for body, expected in cases:
        assert schema.is_valid(body) is expected, (body, "the schema's verdict is not the one this table expects")
        status = client.post("/invocations", data=json.dumps(body), content_type=JSON).status_code
        if (status == 200) is not expected:
            disagreements.append((json.dumps(body), expected, status))
    return disagreements


def test_the_embedding_request_schemas_accept_what_the_handler_accepts(qwen):
    schema = _validator({"anyOf": [{"$ref": "#/components/schemas/EmbeddingRequest"},
                                   {"$ref": "#/components/schemas/SearchRequest"}]})
    assert _verdicts(qwen, schema, EMBEDDING_VERDICTS) == []


def test_the_image_request_schema_accepts_what_the_handler_accepts(sd):
    assert _verdicts(sd, _component("ImageRequest"), IMAGE_VERDICTS) == []


def test_the_cli_writes_the_same_document(tmp_path):
    output = tmp_path / "openapi.json"
    cli = [sys.executable, "-m", "localmaker.cli", "openapi"]
    written = subprocess.run([*cli, "-o", str(output)], capture_output=True, text=True, timeout=60)
    assert written.returncode == 0, written.stderr
    assert json.loads(output.read_text()) == DOCUMENT
    printed = subprocess.run([*cli, "-o", "-"], capture_output=True, text=True, timeout=60)
    assert json.loads(printed.stdout) == DOCUMENT
