"""How each check judges an answer, on answers written out here (the e2e tests judge real endpoints)."""

from __future__ import annotations

import json

import pytest

from localmaker.contract import checks, probes
from localmaker.contract.examples import parse_examples
from localmaker.contract.instance_client import Exchange, ProbeRequest, Reply
from localmaker.contract.results import Outcome

JSON = "application/json"
BASE = ProbeRequest(b'{"inputs": "x"}', JSON, JSON)


def _exchange(status: int | None, body: bytes = b"{}", content_type: str | None = JSON,
              request: ProbeRequest = BASE, label: str = "probe") -> Exchange:
    failure = None if status is not None else "ConnectionResetError: reset by peer"
    return Exchange(label, request, Reply(status, content_type if status else None, body, 0.01, failure))


def _error(status: int, message: str) -> Exchange:
    return _exchange(status, json.dumps({"error": {"code": "X", "message": message}}).encode())


def test_a_4xx_for_an_unsupported_type_passes_and_notes_the_usual_status():
    assert checks.check_unsupported_content_type(_error(415, "no")).outcome is Outcome.PASSED
    other = checks.check_unsupported_content_type(_error(400, "no"))
    assert other.outcome is Outcome.PASSED and "(415 is the usual status)" in other.reason


@pytest.mark.parametrize(("exchange", "fragments"), [
    (_error(500, "ValueError: cannot decode"), ["answered 500: ValueError: cannot decode", "answer 415",
                                                "not a server error"]),
    (_exchange(200), ["answered 200", "with 415 rather than guess"]),
    (_exchange(None), ["got no answer (ConnectionResetError: reset by peer)"]),
])
def test_anything_but_a_4xx_for_an_unsupported_type_fails(exchange, fragments):
    result = checks.check_unsupported_content_type(exchange)
    assert result.outcome is Outcome.FAILED and result.name == "unsupported-content-type"
    assert all(fragment in result.reason for fragment in fragments), result.reason


def test_unsupported_accept_expects_406():
    result = checks.check_unsupported_accept(_error(500, "boom"))
    assert result.outcome is Outcome.FAILED and "answer 406" in result.reason


def test_payload_too_large_is_exactly_413():
    request = probes.oversized(BASE, 1000)
    assert len(request.body) == 1001 and json.loads(request.body) == {"inputs": "x"}  # only the size is wrong
    assert checks.check_payload_too_large(_exchange(413, request=request)).outcome is Outcome.PASSED
    failed = checks.check_payload_too_large(Exchange("big", request, _error(400, "not JSON").reply))
    assert failed.outcome is Outcome.FAILED
    assert failed.reason.startswith("a 1001-byte body answered 400: not JSON; expected 413")


def test_malformed_bodies_are_probed_only_for_syntaxes_the_check_knows():
    made = probes.malformed_bodies(["application/json", "text/csv", "application/x-npy", "application/json"], JSON)
    assert [request.content_type for request in made] == ["application/json", "application/x-npy"]
    skipped = checks.check_malformed_bodies([])
    assert skipped.outcome is Outcome.SKIPPED
    mixed = checks.check_malformed_bodies([_error(400, "bad json"), _error(500, "crash")])
    assert mixed.outcome is Outcome.FAILED and "answered 500: crash" in mixed.reason


def test_content_types_group_the_declared_pairs():
    npy = ProbeRequest(b"{}", JSON, "application/x-npy")
    ok = checks.check_content_types([_exchange(200), _exchange(400), _exchange(200, request=npy)])
    assert ok.outcome is Outcome.PASSED
    assert ok.reason == "2xx for application/json -> application/json, application/json -> application/x-npy"
    refused = checks.check_content_types([_exchange(200), Exchange("e", npy, _error(406, "no").reply)])
    assert refused.outcome is Outcome.FAILED
    assert refused.reason == "application/json -> application/x-npy answered 406: no"


def test_response_content_type_reads_every_answer_and_lists_the_first_problems():
    lying = _exchange(200, b"echo: hi", label="example 'smoke'")
    wrong_kind = _exchange(200, b"{}", request=ProbeRequest(b"{}", JSON, "image/png"), label="example 'png'")
    result = checks.check_response_content_types([_error(415, "no"), lying, wrong_kind, _exchange(None)])
    assert result.outcome is Outcome.FAILED
    assert "example 'smoke' (200, Content-Type application/json): the body is not JSON" in result.reason
    assert "example 'png' (200): asked for image/png, got application/json" in result.reason
    assert checks.check_response_content_types([_error(415, "no"), _exchange(200)]).reason == (
        "2 responses, each body of its Content-Type")


def test_examples_are_judged_by_status_then_json():
    case, = parse_examples(json.dumps({"name": "dims", "body": {}, "expect_json": {"dimensions": 4, "v": [0.5]},
                                       "tolerance": 0.01}))
    matching = _exchange(200, json.dumps({"dimensions": 4, "v": [0.504], "extra": 1}).encode())
    assert checks.check_example(case, matching).reason == "answered 200; the JSON matches"
    off = checks.check_example(case, _exchange(200, b'{"dimensions": 4, "v": [0.6]}'))
    assert off.outcome is Outcome.FAILED and off.name == "example: dims"
    assert off.reason == "answered 200, but $.v[0]: expected 0.5 ± 0.01, got 0.6"
    wrong_status = checks.check_example(case, _error(400, '"inputs" is missing'))
    assert wrong_status.reason == 'expected 200, answered 400: "inputs" is missing'
    not_json = checks.check_example(case, _exchange(200, b"echo"))
    assert not_json.outcome is Outcome.FAILED and "not JSON" in not_json.reason


def test_ping_fails_with_the_deployment_failure_or_an_unhealthy_instance():
    failed = checks.check_ping("endpoint 'e' failed to start: RuntimeError: no weights", 3.0, [])
    assert failed.outcome is Outcome.FAILED and failed.reason.endswith("RuntimeError: no weights")
    unhealthy = checks.check_ping(None, 3.0, [Reply(503, JSON, b'{"error": {"message": "loading"}}', 0.1)])
    assert unhealthy.reason == "InService, but GET /ping answered 503: loading"
    healthy = checks.check_ping(None, 3.0, [Reply(200, JSON, b"{}", 0.1)])
    assert healthy.outcome is Outcome.PASSED
