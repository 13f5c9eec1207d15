"""``"stream": true``: tiny-sd's generation as one JSON line per denoising step, then the usual answer."""

from __future__ import annotations

import json
import threading
from types import ModuleType
from typing import Any

import pytest

from tests.inference.handler_loader import invoke, sibling

errors = sibling("serving_errors")
JSON_LINES = "application/jsonlines"


def _request(steps: int, seed: int = 5, scheduler: str = "euler", **extra: Any) -> dict[str, Any]:
    return {"inputs": "a lighthouse at dusk",
            "parameters": {"num_inference_steps": steps, "seed": seed, "scheduler": scheduler}, **extra}


def _streamed(handler: ModuleType, service: Any, request: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    data = handler.input_fn(json.dumps(request).encode(), "application/json")
    lines, kind = handler.output_fn(handler.predict_fn(data, service), JSON_LINES)
    return [json.loads(line) for line in lines], kind


def test_one_progress_line_per_step_then_the_answer_the_same_request_gets_whole(handler, sd_service):
    lines, kind = _streamed(handler, sd_service, _request(3, stream=True))
    assert kind == JSON_LINES
    progress, final = lines[:-1], lines[-1]
    assert [line["step"] for line in progress] == [1, 2, 3]
    assert {line["total"] for line in progress} == {3}
    assert all(set(line) == {"step", "total", "elapsed_s"} for line in progress)
    elapsed = [line["elapsed_s"] for line in progress]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0
    whole, _ = invoke(handler, sd_service, _request(3))
    assert final == json.loads(whole) | {"timings": final["timings"]}, "the last line is the unstreamed answer"


def test_total_counts_the_steps_the_scheduler_really_runs(handler, sd_service):
    # PNDM (tiny-sd's own) runs one warm-up step more than num_inference_steps: each gets its line.
    lines, _ = _streamed(handler, sd_service, _request(3, scheduler="pndm", stream=True))
    progress = lines[:-1]
    assert [line["step"] for line in progress] == list(range(1, len(progress) + 1))
    assert {line["total"] for line in progress} == {len(progress)} and len(progress) >= 3


def test_nothing_is_generated_until_the_stream_is_read_and_a_reader_that_stops_stops_it(handler, sd_service):
    data = handler.input_fn(json.dumps(_request(40, stream=True)).encode(), "application/json")
    lines, _ = handler.output_fn(handler.predict_fn(data, sd_service), JSON_LINES)
    assert not any(t.name == "diffusion-stream" for t in threading.enumerate()), "generation began unread"
    assert json.loads(next(lines))["step"] == 1
    lines.close()  # the client hung up: the pipeline stops at its next step, and close waits for it
    assert not any(t.name == "diffusion-stream" for t in threading.enumerate())
    whole, _ = invoke(handler, sd_service, _request(1))  # the pipeline is free and intact
    assert json.loads(whole)["seeds"] == [5]


def test_a_streamed_request_in_a_batch_streams_alone_and_the_others_are_answered_whole(handler, sd_service):
    streamed = handler.prepare_fn(_request(2, stream=True), sd_service)
    plain = handler.prepare_fn(_request(2, seed=9), sd_service)
    first, second = handler.predict_batch_fn([streamed, plain], sd_service)
    assert json.loads(handler.output_fn(second, "application/json")[0])["seeds"] == [9]
    lines = [json.loads(line) for line in handler.output_fn(first, JSON_LINES)[0]]
    assert [line.get("step") for line in lines] == [1, 2, None] and lines[-1]["seeds"] == [5]


@pytest.mark.parametrize("value", ["yes", 1, None, {"on": True}])
def test_stream_must_be_a_boolean(handler, sd_service, value):
    data = handler.input_fn(json.dumps(_request(1, stream=value)).encode(), "application/json")
    with pytest.raises(errors.InvalidInput, match='"stream" must be true or false'):
        handler.predict_fn(data, sd_service)


def test_an_accept_that_cannot_carry_a_stream_is_a_406_before_generating(handler, sd_service):
    class Context:
        headers = {"accept": "image/png"}

    data = handler.input_fn(json.dumps(_request(1, stream=True)).encode(), "application/json")
    with pytest.raises(errors.UnsupportedAccept, match="application/jsonlines"):
        handler.predict_fn(data, sd_service, Context())
