"""Handlers that return an iterator stream their answer: the chunk rule, on the real Flask app in-process.

The gunicorn side (chunked HTTP on the wire, each chunk as it is produced) is measured end to end in
tests/e2e/test_response_streaming.py.
"""

from __future__ import annotations

import json
import threading

import pytest

from localmaker.local_endpoint.chunk_streams import Relay, as_chunks, is_chunk_iterator


def _post(app, body=b"{}", **headers):
    return app.test_client().post("/invocations", data=body, headers={"Content-Type": "application/json", **headers},
                                  buffered=False)


def test_each_item_is_one_chunk_bytes_as_is_str_as_utf8_other_values_as_json_lines(script_app):
    app = script_app("""
        def model_fn(model_dir):
            return None

        def transform_fn(model, body, content_type, accept):
            def chunks():
                yield b"raw\\x00"
                yield "é"
                yield ""
                yield {"step": 1}
                yield [1, 2]
            return chunks(), "application/x-custom"
    """)
    response = _post(app)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-custom"
    assert "Content-Length" not in response.headers, "a stream must not announce its length"
    assert list(response.response) == [b"raw\x00", "é".encode(), b'{"step": 1}\n', b"[1, 2]\n"]


def test_a_predict_fn_generator_streams_with_the_default_output_fn_labelled_with_the_accept(script_app):
    app = script_app("""
        import threading

        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            return ({"n": n, "thread": threading.current_thread().name} for n in range(data["count"]))
    """)
    response = _post(app, json.dumps({"count": 3}).encode(), Accept="application/jsonlines")
    assert response.headers["Content-Type"] == "application/jsonlines"
    lines = [json.loads(chunk) for chunk in response.response]
    assert [line["n"] for line in lines] == [0, 1, 2]
    assert {line["thread"] for line in lines} == {"model-executor"}, "the iterator runs on the model thread"


def test_a_batching_handler_streams_too_with_its_iterator_advanced_on_the_model_thread(script_app):
    app = script_app("""
        import threading

        def model_fn(model_dir):
            return None

        def predict_batch_fn(items, model):
            return [({"n": n, "thread": threading.current_thread().name} for n in range(item["count"]))
                    for item in items]

        def output_fn(prediction, accept):
            return prediction, "application/jsonlines"
    """)
    response = _post(app, json.dumps({"count": 4}).encode())
    assert response.headers["Content-Type"] == "application/jsonlines"
    lines = [json.loads(chunk) for chunk in response.response]
    assert [line["n"] for line in lines] == [0, 1, 2, 3]
    assert {line["thread"] for line in lines} == {"model-executor"}


def test_lists_tuples_and_dicts_stay_whole_answers(script_app):
    app = script_app("""
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            return [1, 2, 3]
    """)
    response = _post(app)
    assert json.loads(response.get_data()) == [1, 2, 3]
    assert response.headers.get("Content-Length")
    assert not is_chunk_iterator([1]) and not is_chunk_iterator((1,)) and not is_chunk_iterator(b"x")
    assert is_chunk_iterator(iter([1])) and is_chunk_iterator(n for n in ())


def test_a_stream_that_fails_before_its_first_chunk_answers_an_error_status(script_app):
    app = script_app("""
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            def chunks():
                raise ValueError("the prompt is empty")
                yield b"never"
            return chunks()
    """)
    response = _post(app)
    assert response.status_code == 500
    body = json.loads(response.get_data())
    assert "the prompt is empty" in json.dumps(body) and "Traceback" not in json.dumps(body)
    assert _post(app).status_code == 500, "the model thread is free for the next request"


def test_a_failure_after_the_first_chunk_ends_the_body_with_the_exception(script_app):
    app = script_app("""
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            def chunks():
                yield b"first"
                raise RuntimeError("broke mid-way")
            return chunks()

        def output_fn(prediction, accept):
            return prediction
    """)
    response = _post(app)
    assert response.status_code == 200
    body = iter(response.response)
    assert next(body) == b"first"
    # Under gunicorn this closes the connection without the last chunk: the caller sees a broken stream.
    with pytest.raises(RuntimeError, match="broke mid-way"):
        next(body)


def test_a_stream_silent_for_longer_than_the_timeout_is_a_504_before_its_first_chunk(script_app):
    app = script_app("""
        import time

        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            def chunks():
                time.sleep(3)
                yield b"late"
            return chunks()

        def output_fn(prediction, accept):
            return prediction
    """, timeout_s=1)
    response = _post(app)
    assert response.status_code == 504
    assert "SAGEMAKER_MODEL_SERVER_TIMEOUT" in response.get_data(as_text=True)


def test_the_relay_hands_chunks_on_in_order_and_stops_the_pump_when_abandoned():
    produced = []
    closed = threading.Event()

    def source():
        try:
            for n in range(1000):
                produced.append(n)
                yield str(n)
        finally:
            closed.set()

    relay = Relay(stall_timeout_s=30, depth=2)
    pump = threading.Thread(target=relay.pump, args=(as_chunks(source()),))
    pump.start()
    assert [relay.take(5) for _ in range(3)] == [b"0", b"1", b"2"]
    relay.abandon()
    pump.join(timeout=5)
    assert not pump.is_alive() and closed.is_set()
    assert len(produced) < 10, "a bounded relay keeps the producer a few chunks ahead at most"


def test_an_item_that_cannot_be_sent_says_what_to_yield():
    with pytest.raises(TypeError, match="yield bytes, str, or a JSON-serialisable value"):
        list(as_chunks(iter([object()])))
