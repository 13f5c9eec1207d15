"""The container app in-process: ping, hooks, content negotiation and the error mapping."""

from __future__ import annotations

import io
import json

import numpy as np

from localmaker.local_endpoint.app import create_app
from localmaker.local_endpoint.settings import EndpointSettings

ECHO_SCRIPT = """
    import torch

    def model_fn(model_dir):
        return {"scale": 2.0}

    def predict_fn(data, model):
        return {"doubled": torch.tensor(data["values"]) * model["scale"], "n": len(data["values"])}
"""


def _error(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert "Traceback" not in json.dumps(body)
    return body["error"]


def test_ping_is_healthy_once_model_fn_returned(script_app):
    client = script_app(ECHO_SCRIPT).test_client()
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.get_json() == {"status": "Healthy"}


def test_ping_answers_503_while_model_fn_runs(script_app, tmp_path):
    release = tmp_path / "release"
    app = script_app(f"""
        import pathlib, time

        def model_fn(model_dir):
            while not pathlib.Path({str(release)!r}).exists():
                time.sleep(0.02)
            return object()

        def predict_fn(data, model):
            return data
    """, background=True)
    client = app.test_client()
    loading = client.get("/ping")
    assert loading.status_code == 503
    assert loading.headers["Retry-After"] == "1"
    assert _error(loading)["code"] == "ModelNotReady"
    assert client.post("/invocations", json={"x": 1}).status_code == 503
    release.touch()
    assert app.extensions["localmaker.model"].wait(timeout=5)
    assert client.get("/ping").status_code == 200


def test_model_fn_failure_is_reported_by_ping_with_its_message(script_app):
    client = script_app("""
        def model_fn(model_dir):
            raise ValueError("weights are missing: expected model.safetensors")
    """).test_client()
    response = client.get("/ping")
    assert response.status_code == 503
    error = _error(response)
    assert error["code"] == "ModelLoadFailed"
    assert "ValueError: weights are missing: expected model.safetensors" in error["message"]


def test_defaults_fill_in_input_and_output_and_encode_tensors(script_app):
    client = script_app(ECHO_SCRIPT).test_client()
    response = client.post("/invocations", json={"values": [1.0, 2.5]})
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.get_json() == {"doubled": [2.0, 5.0], "n": 2}


def test_npy_in_and_out_with_default_codecs(script_app):
    client = script_app("""
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            return data * 3
    """).test_client()
    buffer = io.BytesIO()
    np.save(buffer, np.arange(4, dtype=np.float32))
    response = client.post("/invocations", data=buffer.getvalue(),
                           headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"})
    assert response.status_code == 200
    assert response.content_type == "application/x-npy"
    np.testing.assert_array_equal(np.load(io.BytesIO(response.data)), np.arange(4) * 3)


def test_context_is_passed_only_to_hooks_that_name_it(script_app):
    client = script_app("""
        def model_fn(model_dir, context):
            return {"loaded_from": str(context.model_dir)}

        def predict_fn(data, model, context):
            context.response_custom_attributes = "seen=" + (context.custom_attributes or "")
            return {"attributes": context.custom_attributes, "model": model}

        def output_fn(prediction, accept):
            import json
            return json.dumps(prediction), "application/json"
    """).test_client()
    response = client.post("/invocations", json={}, headers={"X-Amzn-SageMaker-Custom-Attributes": "trace=7"})
    assert response.status_code == 200
    assert response.get_json()["attributes"] == "trace=7"
    assert response.get_json()["model"]["loaded_from"].endswith("model")
    assert response.headers["X-Amzn-SageMaker-Custom-Attributes"] == "seen=trace=7"


def test_transform_fn_with_the_other_hooks_is_a_clear_load_error(script_app):
    client = script_app("""
        def model_fn(model_dir):
            return None

        def transform_fn(model, body, content_type, accept):
            return body

        def predict_fn(data, model):
            return data
    """).test_client()
    error = _error(client.get("/ping"))
    assert "transform_fn together with predict_fn" in error["message"]


def test_transform_fn_alone_serves(script_app):
    client = script_app("""
        def model_fn(model_dir):
            return b"!"

        def transform_fn(model, body, content_type, accept):
            return body + model, "text/plain"
    """).test_client()
    response = client.post("/invocations", data=b"hi", headers={"Content-Type": "text/plain"})
    assert (response.status_code, response.data, response.content_type) == (200, b"hi!", "text/plain")


def test_bad_requests_get_4xx_json_and_the_server_keeps_serving(script_app):
    client = script_app(ECHO_SCRIPT, max_payload_bytes=1024).test_client()
    cases = [
        (dict(data=b"{not json", headers={"Content-Type": "application/json"}), 400, "BadRequest"),
        (dict(data=b"a,b", headers={"Content-Type": "application/xml"}), 415, "UnsupportedContentType"),
        (dict(json={"values": [1]}, headers={"Accept": "image/gif"}), 406, "UnsupportedAccept"),
        (dict(data=b"x" * 2048, headers={"Content-Type": "application/json"}), 413, "PayloadTooLarge"),
        (dict(data=b"", headers={"Content-Type": "application/json"}), 400, "BadRequest"),
    ]
    for kwargs, status, code in cases:
        response = client.post("/invocations", **kwargs)
        assert response.status_code == status, (kwargs, response.data)
        error = _error(response)
        assert error["code"] == code
        assert error["message"]
    assert client.post("/invocations", json={"values": [1.0]}).get_json()["doubled"] == [2.0]


def test_the_real_6mb_limit_applies_by_default(script_app):
    client = script_app(ECHO_SCRIPT).test_client()
    response = client.post("/invocations", data=b"1" * (6 * 1024 * 1024 + 1),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_handler_exception_is_a_500_without_traceback_then_serving_continues(script_app):
    client = script_app("""
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            if data.get("explode"):
                raise RuntimeError("boom in predict_fn")
            return {"ok": True}
    """).test_client()
    response = client.post("/invocations", json={"explode": True})
    assert response.status_code == 500
    error = _error(response)
    assert error["code"] == "HandlerFailure"
    assert "RuntimeError: boom in predict_fn" in error["message"]
    assert client.post("/invocations", json={}).get_json() == {"ok": True}


def test_handler_errors_with_a_status_code_keep_their_4xx(script_app):
    client = script_app("""
        class InvalidInput(Exception):
            status_code = 422

            def __init__(self, message):
                super().__init__(message)
                self.message = message

        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            raise InvalidInput("field 'inputs' must be a string")
    """).test_client()
    response = client.post("/invocations", json={})
    assert response.status_code == 422
    assert _error(response)["message"] == "field 'inputs' must be a string"


def test_unknown_routes_answer_json(script_app):
    client = script_app(ECHO_SCRIPT).test_client()
    response = client.get("/nope")
    assert response.status_code == 404
    assert _error(response)["code"] == "NotFound"
    assert client.get("/invocations").status_code == 405


def test_two_scripts_in_one_process_each_get_their_own_sibling_modules(tmp_path):
    apps = []
    for value in ("first", "second"):
        code_dir = tmp_path / value / "code"
        code_dir.mkdir(parents=True)
        (code_dir / "helper_mod.py").write_text(f"VALUE = {value!r}\n")
        (code_dir / "inference.py").write_text(
            "import helper_mod\n"
            "def model_fn(model_dir):\n    return helper_mod.VALUE\n"
            "def predict_fn(data, model):\n    return {'value': model}\n"
        )
        apps.append(create_app(EndpointSettings(model_dir=code_dir.parent, code_dir=code_dir),
                               load_in_background=False))
    values = [app.test_client().post("/invocations", json={}).get_json()["value"] for app in apps]
    assert values == ["first", "second"]


IDENTITY_SCRIPT = """
    def model_fn(model_dir):
        return None

    def predict_fn(data, model):
        return data
"""


def test_an_npy_header_declaring_more_data_than_the_body_carries_is_a_400(script_app):
    client = script_app(IDENTITY_SCRIPT).test_client()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    response = client.post("/invocations", data=header.getvalue() + bytes(16),
                           headers={"Content-Type": "application/x-npy"})
    assert response.status_code == 400
    assert "declares 8000000000000 bytes" in _error(response)["message"]
    assert client.post("/invocations", json=[1, 2]).get_json() == [1, 2]


def test_an_accept_list_is_read_as_the_toolkit_reads_it_and_bare_bytes_get_one_concrete_type(script_app):
    # sagemaker_inference utils.parse_accept, as default_output_fn uses it: the entries of the list, each
    # compared exactly, the first supported one wins; no wildcards, no q-values
    client = script_app(IDENTITY_SCRIPT).test_client()
    response = client.post("/invocations", json=[1.5], headers={"Accept": "text/html, application/x-npy"})
    assert (response.status_code, response.content_type) == (200, "application/x-npy")
    np.testing.assert_array_equal(np.load(io.BytesIO(response.data)), [1.5])
    browser_like = "text/html, application/x-npy;q=0.9, */*;q=0.8"  # a real container refuses it too
    response = client.post("/invocations", json=[1.5], headers={"Accept": browser_like})
    assert response.status_code == 406
    assert "named exactly" in _error(response)["message"]
    assert client.post("/invocations", json=[1], headers={"Accept": "text/html, image/gif"}).status_code == 406

    bare = script_app("""
        def model_fn(model_dir):
            return None

        def transform_fn(model, body, content_type, accept):
            return body
    """).test_client()
    response = bare.post("/invocations", data=b"raw", headers={"Accept": "text/plain, application/json;q=0.5"})
    assert (response.status_code, response.data, response.content_type) == (200, b"raw", "text/plain")
