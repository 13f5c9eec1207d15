"""The container's defaults, each as the SageMaker containers' toolkits have it.

Each test names the toolkit function it mirrors: ``sagemaker_inference`` is aws/sagemaker-inference-toolkit
(src/sagemaker_inference/, v1.10), the PyTorch container's request handling and base defaults;
``sagemaker_pytorch_serving_container`` is aws/sagemaker-pytorch-inference-toolkit; ``hf`` is
aws/sagemaker-huggingface-inference-toolkit (src/sagemaker_huggingface_inference_toolkit/). Where the two
containers differ, localmaker/local_endpoint/default_codecs.py says which one is followed, and why.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from localmaker.local_endpoint.settings import EndpointSettings

# Reports what the hooks were handed, so a test can see the request as the script sees it.
SEEN_SCRIPT = """
    import json

    def model_fn(model_dir):
        return None

    def input_fn(request_body, request_content_type):
        return {"body_type": type(request_body).__name__, "content_type": request_content_type}

    def predict_fn(data, model):
        return data

    def output_fn(prediction, accept):
        return json.dumps({**prediction, "accept": accept}), "application/json"
"""

# The shape of the inference.py scripts published for SageMaker's PyTorch container: they accept JSON
# only, and refuse any other Accept.
PUBLIC_STYLE_SCRIPT = """
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
"""

# Only model_fn and predict_fn: the default input_fn and output_fn do the rest. predict_fn answers what
# the request names, so one script covers every kind of prediction.
PREDICTIONS_SCRIPT = """
    import datetime
    import numpy as np
    import torch
    from PIL import Image

    def model_fn(model_dir):
        return {
            "str": lambda: "a label",
            "bytes": lambda: b"raw bytes",
            "dict": lambda: {"label": "cat", "score": 0.5},
            "list": lambda: [1, 2.5, "x"],
            "numpy": lambda: np.array([[1.5, 2.0], [3.0, 4.0]], dtype=np.float32),
            "numpy_1d": lambda: np.array([1.5, 2.0, 3.0]),
            "numpy_scalars": lambda: {"n": np.int64(3), "x": np.float32(0.5), "b": np.bool_(True)},
            "tensor": lambda: torch.tensor([[0.5, 1.0]]),
            "tensor_in_dict": lambda: {"embedding": torch.tensor([0.25, 0.75])},
            "records": lambda: [{"label": "cat", "score": 0.75}, {"label": "dog", "score": 0.25}],
            "datetime": lambda: {"at": datetime.datetime(2024, 1, 2, 3, 4, 5)},
            "image": lambda: Image.new("RGB", (2, 3), (255, 0, 0)),
            "image_in_dict": lambda: {"image": Image.new("RGB", (2, 2), (0, 0, 255))},
        }

    def predict_fn(data, model):
        return model[data["kind"]]()
"""

IDENTITY_SCRIPT = """
    def model_fn(model_dir):
        return None

    def predict_fn(data, model):
        return data
"""


def _error(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert "Traceback" not in json.dumps(body)
    return body["error"]


def _seen(client, body: bytes = b"{}", **headers: str) -> dict:
    response = client.post("/invocations", data=body, headers=headers)
    assert response.status_code == 200, response.data
    return response.get_json()


def _predict(client, kind: str, accept: str | None = None):
    headers = {"Accept": accept} if accept else {}
    return client.post("/invocations", json={"kind": kind}, headers=headers)


# --- the request as the hooks receive it -------------------------------------------------------------------


def test_a_request_without_accept_reaches_output_fn_as_application_json(script_app):
    # sagemaker_inference transformer.py Transformer.transform: `if not accept or accept == content_types.ANY:
    # accept = self._environment.default_accept`; hf handler_service.py HuggingFaceHandlerService.handle
    client = script_app(SEEN_SCRIPT).test_client()
    assert _seen(client, **{"Content-Type": "application/json"})["accept"] == "application/json"
    assert _seen(client, **{"Content-Type": "application/json", "Accept": ""})["accept"] == "application/json"


def test_accept_star_star_reaches_output_fn_as_application_json_and_only_exactly_that(script_app):
    # sagemaker_inference transformer.py Transformer.transform compares with content_types.ANY ("*/*") exactly:
    # a wildcard with parameters, or in a list, reaches output_fn as sent
    client = script_app(SEEN_SCRIPT).test_client()
    assert _seen(client, **{"Content-Type": "application/json", "Accept": "*/*"})["accept"] == "application/json"
    for sent in ("*/*;q=0.8", "text/html, */*", "application/json; charset=utf-8"):
        assert _seen(client, **{"Content-Type": "application/json", "Accept": sent})["accept"] == sent


def test_sagemaker_default_invocations_accept_overrides_the_default(script_app):
    # sagemaker_inference environment.py Environment.__init__: default_accept is
    # os.environ.get(parameters.DEFAULT_INVOCATIONS_ACCEPT_ENV, content_types.JSON). (The Hugging Face
    # handler ignores the variable; an instance cannot tell which container it is, so the PyTorch
    # container's behaviour is followed.)
    settings = EndpointSettings.from_env({"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"})
    assert settings.default_accept == "text/csv"
    assert EndpointSettings.from_env({}).default_accept == "application/json"

    client = script_app(SEEN_SCRIPT, default_accept="text/csv").test_client()
    assert _seen(client, **{"Content-Type": "application/json"})["accept"] == "text/csv"
    assert _seen(client, **{"Content-Type": "application/json", "Accept": "*/*"})["accept"] == "text/csv"
    assert _seen(client, **{"Content-Type": "application/json", "Accept": "application/x-npy"})["accept"] == (
        "application/x-npy")

    defaults = script_app(IDENTITY_SCRIPT, default_accept="text/csv").test_client()
    response = defaults.post("/invocations", json=[[1, 2], [3, 4]])
    assert (response.status_code, response.content_type, response.data) == (200, "text/csv", b"1,2\n3,4\n")


def test_a_public_style_script_that_only_speaks_json_answers_without_accept(script_app):
    # The scripts published for SageMaker refuse every Accept but application/json, and work in the real
    # container because Transformer.transform turns a missing Accept and */* into application/json.
    client = script_app(PUBLIC_STYLE_SCRIPT).test_client()
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        response = client.post("/invocations", json={"values": [1, 2]}, headers=headers)
        assert response.status_code == 200, (headers, response.data)
        assert response.get_json() == {"scaled": [3, 6]}
        # transformer.py Transformer.transform: a body returned alone is labelled with the accept
        assert response.content_type == "application/json"
    refused = client.post("/invocations", json={"values": [1]}, headers={"Accept": "text/csv"})
    assert refused.status_code == 500
    assert "Unsupported accept type: text/csv" in _error(refused)["message"]


def test_a_missing_content_type_reaches_input_fn_as_none(script_app):
    # sagemaker_inference utils.py retrieve_content_type_header returns None when no header matches;
    # hf handler_service.py HuggingFaceHandlerService.handle uses the same function
    client = script_app(SEEN_SCRIPT).test_client()
    seen = _seen(client, body=b'{"a": 1}')
    assert seen["content_type"] is None
    assert seen["body_type"] == "bytes"


def test_json_and_csv_bodies_reach_input_fn_as_str_and_others_as_bytes(script_app):
    # sagemaker_inference transformer.py Transformer.transform: `if content_type in content_types.UTF8_TYPES:
    # input_data = input_data.decode("utf-8")` (UTF8_TYPES = [JSON, CSV], compared exactly); the same in
    # hf handler_service.py HuggingFaceHandlerService.handle. The model server does not decode first
    # (decode_input_request=false in both containers' model-server properties).
    client = script_app(SEEN_SCRIPT).test_client()
    expected = {
        "application/json": "str",
        "text/csv": "str",
        "application/json; charset=utf-8": "bytes",  # not exactly application/json
        "Application/JSON": "bytes",
        "application/x-npy": "bytes",
        "text/plain": "bytes",
    }
    for content_type, body_type in expected.items():
        seen = _seen(client, **{"Content-Type": content_type})
        assert (seen["body_type"], seen["content_type"]) == (body_type, content_type), content_type


def test_a_json_body_that_is_not_utf8_is_a_400(script_app):
    # Transformer.transform's decode("utf-8") raises here; the toolkit answers 500, localmaker 400
    client = script_app(SEEN_SCRIPT).test_client()
    response = client.post("/invocations", data='{"a": "é"}'.encode("latin-1"),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "not valid UTF-8" in _error(response)["message"]


def test_transform_fn_gets_the_default_accept_and_a_str_json_body(script_app):
    # Transformer.transform passes the same input_data, content_type and accept to a user's transform_fn
    client = script_app("""
        import json

        def model_fn(model_dir):
            return None

        def transform_fn(model, input_data, content_type, accept):
            return json.dumps({"type": type(input_data).__name__, "accept": accept})
    """).test_client()
    response = client.post("/invocations", json={})
    assert response.get_json() == {"type": "str", "accept": "application/json"}


# --- the default input_fn -----------------------------------------------------------------------------------


def test_the_default_input_fn_refuses_a_request_without_content_type(script_app):
    # sagemaker_inference decoder.py decode: _decoder_map[None] raises KeyError -> UnsupportedFormatError
    # (a 500 there); hf decoder_encoder.py decode does the same (a 400 there). localmaker answers 415.
    client = script_app(IDENTITY_SCRIPT).test_client()
    response = client.post("/invocations", data=b'{"a": 1}')
    assert response.status_code == 415
    assert "no Content-Type" in _error(response)["message"]


def test_the_default_input_fn_matches_content_type_exactly_so_a_charset_is_refused(script_app):
    # sagemaker_inference decoder.py decode and hf decoder_encoder.py decode look the header up as it is,
    # parameters and case included
    client = script_app(IDENTITY_SCRIPT).test_client()
    for content_type in ("application/json; charset=utf-8", "Application/JSON", "text/csv;charset=UTF-8"):
        response = client.post("/invocations", data=b"[1]", headers={"Content-Type": content_type})
        assert response.status_code == 415, content_type
        assert "compare it exactly" in _error(response)["message"]
    assert client.post("/invocations", data=b"[1]", headers={"Content-Type": "application/json"}).status_code == 200


def test_the_default_json_decoder_gives_the_json_value(script_app):
    # hf decoder_encoder.py decode_json: json.loads(content), so a dict stays a dict. (The PyTorch container's
    # DefaultPytorchInferenceHandler.default_input_fn makes torch.FloatTensor(np.array(...)) of it instead;
    # ARCHITECTURE convention 1 follows the Hugging Face toolkit here.)
    client = script_app("""
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            return {"type": type(data).__name__, "data": data}
    """).test_client()
    response = client.post("/invocations", json={"inputs": ["a", "b"], "n": 2})
    assert response.get_json() == {"type": "dict", "data": {"inputs": ["a", "b"], "n": 2}}


CSV_SHAPE_SCRIPT = """
    def model_fn(model_dir):
        return None

    def predict_fn(data, model):
        if isinstance(data, dict):
            return data
        return {"type": type(data).__name__, "dtype": str(data.dtype), "shape": list(data.shape),
                "values": data.tolist()}
"""


def test_the_default_csv_decoder_reads_numbers_with_genfromtxt(script_app):
    # sagemaker_inference decoder.py _csv_to_numpy: np.genfromtxt(stream, dtype=None, delimiter=","), each
    # column typed on its own; one row gives a 1-D array
    client = script_app(CSV_SHAPE_SCRIPT).test_client()

    def decoded(body: bytes) -> dict:
        response = client.post("/invocations", data=body, headers={"Content-Type": "text/csv"})
        assert response.status_code == 200, response.data
        return response.get_json()

    assert decoded(b"1.5,2.5\n3.0,4.0\n") == {"type": "ndarray", "dtype": "float64", "shape": [2, 2],
                                              "values": [[1.5, 2.5], [3.0, 4.0]]}
    assert decoded(b"1,2,3") == {"type": "ndarray", "dtype": "int64", "shape": [3], "values": [1, 2, 3]}


def test_the_default_csv_decoder_refuses_what_torch_float_tensor_refuses(script_app):
    # sagemaker_pytorch_serving_container default_pytorch_inference_handler.py default_input_fn: genfromtxt's
    # record array (a whole-number column next to a decimal one, or text) fails torch.FloatTensor; the
    # Hugging Face decode_csv refuses a CSV without a header too. localmaker answers 400.
    client = script_app(CSV_SHAPE_SCRIPT).test_client()
    for body in (b"1.5,2\n3.5,4\n", b"cat,dog\n", b"1,2\n3\n"):
        response = client.post("/invocations", data=body, headers={"Content-Type": "text/csv"})
        assert response.status_code == 400, body
        assert "text/csv" in _error(response)["message"]


def test_the_default_csv_decoder_reads_a_header_naming_inputs_as_the_hf_toolkit(script_app):
    # hf decoder_encoder.py decode_csv: a first line naming question, context or inputs makes records;
    # an "inputs" column becomes {"inputs": [...]}, other columns {"inputs": [records]}
    client = script_app(CSV_SHAPE_SCRIPT).test_client()
    response = client.post("/invocations", data=b"inputs\nhello\nworld\n", headers={"Content-Type": "text/csv"})
    assert response.get_json() == {"inputs": ["hello", "world"]}
    response = client.post("/invocations", data=b"question,context\nwho?,me\n", headers={"Content-Type": "text/csv"})
    assert response.get_json() == {"inputs": [{"question": "who?", "context": "me"}]}


def test_the_default_npy_decoder_keeps_dtype_and_shape_and_never_unpickles(script_app):
    # sagemaker_inference decoder.py _npy_to_numpy: np.load(stream, allow_pickle=True), shared by hf
    # decoder_encoder.py; localmaker loads with allow_pickle=False, so an object array is a 400
    client = script_app(CSV_SHAPE_SCRIPT).test_client()
    buffer = io.BytesIO()
    np.save(buffer, np.arange(6, dtype=np.int16).reshape(2, 3))
    response = client.post("/invocations", data=buffer.getvalue(), headers={"Content-Type": "application/x-npy"})
    assert response.get_json() == {"type": "ndarray", "dtype": "int16", "shape": [2, 3],
                                   "values": [[0, 1, 2], [3, 4, 5]]}
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    response = client.post("/invocations", data=pickled.getvalue(), headers={"Content-Type": "application/x-npy"})
    assert response.status_code == 400


def test_the_default_image_and_audio_decoders_are_the_hf_toolkits(script_app):
    # hf decoder_encoder.py decode_image: {"inputs": Image.open(...).convert("RGB")}; decode_audio:
    # {"inputs": bytes(payload)}
    client = script_app("""
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            inputs = data["inputs"]
            if isinstance(inputs, bytes):
                return {"bytes": len(inputs)}
            return {"mode": inputs.mode, "size": list(inputs.size)}
    """).test_client()
    png = io.BytesIO()
    Image.new("L", (4, 3)).save(png, format="PNG")
    response = client.post("/invocations", data=png.getvalue(), headers={"Content-Type": "image/png"})
    assert response.get_json() == {"mode": "RGB", "size": [4, 3]}
    response = client.post("/invocations", data=b"ID3 fake", headers={"Content-Type": "audio/mpeg"})
    assert response.get_json() == {"bytes": 8}
    response = client.post("/invocations", data=b"not an image", headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 400


# --- the default output_fn, by what predict_fn returns --------------------------------------------------------


def test_the_default_output_fn_writes_each_kind_of_prediction_as_json(script_app):
    # sagemaker_inference encoder.py _array_to_json (json.dumps with default=tolist) and hf decoder_encoder.py
    # _JSONEncoder (numpy numbers, tolist, datetime, PIL images as base64 PNG); a tensor through tolist(), as
    # sagemaker_pytorch_serving_container DefaultPytorchInferenceHandler.default_output_fn does
    client = script_app(PREDICTIONS_SCRIPT).test_client()
    expected = {
        "str": "a label",
        "dict": {"label": "cat", "score": 0.5},
        "list": [1, 2.5, "x"],
        "numpy": [[1.5, 2.0], [3.0, 4.0]],
        "numpy_scalars": {"n": 3, "x": 0.5, "b": True},
        "tensor": [[0.5, 1.0]],
        "tensor_in_dict": {"embedding": [0.25, 0.75]},
        "datetime": {"at": "2024-01-02 03:04:05"},
    }
    for kind, value in expected.items():
        response = _predict(client, kind)
        assert (response.status_code, response.content_type) == (200, "application/json"), kind
        assert response.get_json() == value, kind
    image = Image.open(io.BytesIO(base64.b64decode(_predict(client, "image").get_json())))
    assert (image.format, image.size) == ("PNG", (2, 3))


def test_a_bytes_prediction_cannot_be_json_in_either_toolkit(script_app):
    # encoder.py _array_to_json and hf _JSONEncoder.default both end in json.JSONEncoder.default, which
    # raises TypeError for bytes: the handler's mistake, a 500
    client = script_app(PREDICTIONS_SCRIPT).test_client()
    response = _predict(client, "bytes")
    assert response.status_code == 500
    assert "cannot write a bytes as JSON" in _error(response)["message"]


def test_the_default_output_fn_writes_csv_as_the_toolkits(script_app):
    # sagemaker_inference encoder.py _array_to_csv: np.savetxt(delimiter=",", fmt="%s"), a 1-D prediction one
    # value per line; hf decoder_encoder.py encode_csv: records with a header row (csv.DictWriter)
    client = script_app(PREDICTIONS_SCRIPT).test_client()
    expected = {
        "numpy": b"1.5,2.0\n3.0,4.0\n",
        "numpy_1d": b"1.5\n2.0\n3.0\n",
        "tensor": b"0.5,1.0\n",
        "records": b"label,score\r\ncat,0.75\r\ndog,0.25\r\n",
    }
    for kind, body in expected.items():
        response = _predict(client, kind, "text/csv")
        assert (response.status_code, response.content_type, response.data) == (200, "text/csv", body), kind
    for kind in ("dict", "str"):  # neither toolkit writes these as CSV
        assert _predict(client, kind, "text/csv").status_code == 406, kind


def test_the_default_output_fn_writes_npy_without_pickling(script_app):
    # sagemaker_inference encoder.py _array_to_npy and hf decoder_encoder.py _array_to_npy: np.save(buffer,
    # prediction); they pickle a dict into an object array, which localmaker refuses with a 406
    client = script_app(PREDICTIONS_SCRIPT).test_client()
    response = _predict(client, "numpy", "application/x-npy")
    assert (response.status_code, response.content_type) == (200, "application/x-npy")
    array = np.load(io.BytesIO(response.data), allow_pickle=False)
    assert (array.dtype, array.shape) == (np.float32, (2, 2))
    tensor = np.load(io.BytesIO(_predict(client, "tensor", "application/x-npy").data), allow_pickle=False)
    assert (tensor.dtype, tensor.tolist()) == (np.float32, [[0.5, 1.0]])
    response = _predict(client, "dict", "application/x-npy")
    assert response.status_code == 406
    assert "pickling" in _error(response)["message"]
    # the next type of the list fits, as the toolkit's loop over parse_accept would reach it
    response = _predict(client, "dict", "application/x-npy, application/json")
    assert (response.status_code, response.get_json()) == (200, {"label": "cat", "score": 0.5})


def test_the_default_output_fn_writes_images_as_the_hf_toolkit(script_app):
    # hf decoder_encoder.py encode_image: the image saved in the Accept's format (image/x-image as PNG)
    client = script_app(PREDICTIONS_SCRIPT).test_client()
    for accept, image_format in (("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/x-image", "PNG")):
        response = _predict(client, "image", accept)
        assert (response.status_code, response.content_type) == (200, accept)
        assert Image.open(io.BytesIO(response.data)).format == image_format
    response = _predict(client, "dict", "image/png, application/json")
    assert (response.status_code, response.content_type) == (200, "application/json")
    assert _predict(client, "dict", "image/png").status_code == 406


def test_the_default_output_fn_takes_the_first_supported_type_of_a_list(script_app):
    # sagemaker_inference default_inference_handler.py default_output_fn: `for content_type in
    # utils.parse_accept(accept): if content_type in encoder.SUPPORTED_CONTENT_TYPES`
    client = script_app(PREDICTIONS_SCRIPT).test_client()
    response = _predict(client, "numpy", "text/html, text/csv, application/json")
    assert (response.status_code, response.content_type) == (200, "text/csv")
    response = _predict(client, "numpy", "text/html,application/json")
    assert (response.status_code, response.content_type) == (200, "application/json")
    for accept in ("application/json; charset=utf-8", "application/*", "Application/JSON"):
        assert _predict(client, "numpy", accept).status_code == 406, accept


# --- what a hook's return value becomes ------------------------------------------------------------------------


@pytest.mark.parametrize(("returned", "body", "content_type"), [
    pytest.param('"plain text"', b"plain text", "application/json", id="str-labelled-with-accept"),
    pytest.param('b"\\x00\\x01"', b"\x00\x01", "application/json", id="bytes-labelled-with-accept"),
    pytest.param('(b"a,b", "text/csv")', b"a,b", "text/csv", id="tuple-names-its-type"),
    pytest.param('{"a": [1, 2]}', b'{\n  "a": [\n    1,\n    2\n  ]\n}', "application/json",
                 id="dict-written-by-the-model-server"),
])
def test_what_output_fn_returns_becomes_the_response(script_app, returned, body, content_type):
    # transformer.py Transformer.transform: a tuple is (response, content_type), anything else is labelled
    # with the accept; the model server then sends bytes as they are, str as UTF-8, and anything else as
    # json.dumps(value, indent=2) (TorchServe's and MMS's otf_message_handler.create_predict_response)
    client = script_app(f"""
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            return data

        def output_fn(prediction, accept):
            return {returned}
    """).test_client()
    response = client.post("/invocations", json={})
    assert (response.status_code, response.data, response.content_type) == (200, body, content_type)


def test_an_output_fn_result_the_model_server_cannot_send_is_a_500(script_app):
    # TorchServe and MMS create_predict_response answer "Unsupported model output data type." (a 503 there)
    client = script_app("""
        import numpy as np

        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            return data

        def output_fn(prediction, accept):
            return np.zeros(2)
    """).test_client()
    response = client.post("/invocations", json={})
    assert response.status_code == 500
    assert "output_fn returned a ndarray" in _error(response)["message"]
