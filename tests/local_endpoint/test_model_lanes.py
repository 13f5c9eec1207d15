"""model_lanes_fn: a script says how many model calls may run at once on its model; the app runs that many."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

MEETING_SCRIPT = """
    import threading

    PARTNERS = threading.Barrier(2, timeout={timeout})

    def model_fn(model_dir):
        return "model"

    def predict_fn(data, model):
        PARTNERS.wait()  # returns only when two calls run at the same time
        return {{"thread": threading.current_thread().name}}
    {lanes_fn}
"""
TWO_LANES = "def model_lanes_fn(model):\n        return 2"


def _two_at_once(app) -> list:
    client = app.test_client()
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda _: client.post("/invocations", json={}), range(2)))


def test_a_script_that_declares_two_lanes_gets_two_calls_at_once(script_app) -> None:
    responses = _two_at_once(script_app(MEETING_SCRIPT.format(timeout=10, lanes_fn=TWO_LANES)))
    assert [response.status_code for response in responses] == [200, 200]
    assert sorted(response.get_json()["thread"] for response in responses) == ["model-executor", "model-executor-1"]


def test_a_script_that_declares_nothing_gets_one_call_at_a_time(script_app) -> None:
    responses = _two_at_once(script_app(MEETING_SCRIPT.format(timeout=0.5, lanes_fn="")))
    assert sorted(response.status_code for response in responses) == [500, 500]  # neither met the other


@pytest.mark.parametrize("answer", ["0", "'2'", "True", "1.5"])
def test_a_lanes_answer_that_is_not_a_whole_number_of_one_or_more_fails_the_load_saying_so(script_app,
                                                                                        answer: str) -> None:
    lanes_fn = f"def model_lanes_fn(model):\n        return {answer}"
    response = script_app(MEETING_SCRIPT.format(timeout=1, lanes_fn=lanes_fn)).test_client().get("/ping")
    assert response.status_code == 503
    message = response.get_json()["error"]["message"]
    assert "model_lanes_fn failed" in message and "a whole number of at least 1" in message
    assert "Traceback" not in json.dumps(response.get_json())
