"""contract-test against real endpoints: the built-in handlers pass, each broken handler fails the check
that names its mistake (and only that one), and the endpoint is deleted whatever happened."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from localmaker.contract.deployment import ContractTarget, deployed
from localmaker.contract.examples import DEFAULT_CASES, parse_examples
from localmaker.contract.results import Outcome
from localmaker.contract.runner import ContractRun, run_contract
from localmaker.local_endpoint.openapi_document import openapi_document
from tests.contract.conftest import ECHO_MODEL, HANDLERS
from tests.process_probe import group_members

pytestmark = pytest.mark.e2e

PROBE_CHECKS = ["ping", "content-types", "unsupported-content-type", "unsupported-accept", "malformed-body",
                "payload-too-large", "response-content-type"]


def _outcomes(run: ContractRun) -> dict[str, Outcome]:
    return {result.name: result.outcome for result in run.results}


def _failed(run: ContractRun) -> dict[str, str]:
    return {result.name: result.reason for result in run.results if result.outcome is Outcome.FAILED}


def _assert_deleted(session, run: ContractRun) -> None:
    sagemaker = session.sagemaker_client
    for describe in (lambda: sagemaker.describe_endpoint(EndpointName=run.endpoint_name),
                     lambda: sagemaker.describe_endpoint_config(EndpointConfigName=run.endpoint_name),
                     lambda: sagemaker.describe_model(ModelName=run.endpoint_name)):
        with pytest.raises(ClientError):
            describe()


def _broken(name: str) -> ContractTarget:
    return ContractTarget(source=str(ECHO_MODEL), entry_point=str(HANDLERS / f"{name}.py"), startup_timeout_s=120)


def test_a_deployed_instance_serves_the_openapi_document_and_is_reaped_on_the_way_out(contract_session):
    with deployed(contract_session, _broken("wrong_content_type")) as deployment:
        assert deployment.failure is None and len(deployment.instance_urls) == 1
        groups = [i.pid for i in contract_session.local_endpoint(deployment.endpoint_name).instances]
        assert groups and all(group_members(g) for g in groups)
        with urllib.request.urlopen(f"{deployment.instance_urls[0]}/openapi.json", timeout=10) as answer:
            assert answer.headers["Content-Type"] == "application/json"
            assert json.load(answer) == openapi_document()  # served by gunicorn, whatever the handler
    deadline = time.monotonic() + 15
    while any(group_members(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(group_members(g) for g in groups), "the instance outlived the contract test"


def test_a_500_for_an_unsupported_content_type_fails_that_check_alone(contract_session):
    run = run_contract(contract_session, _broken("unsupported_type_500"), DEFAULT_CASES)
    failed = _failed(run)
    assert list(failed) == ["unsupported-content-type"], failed
    assert failed["unsupported-content-type"].startswith(
        "Content-Type application/x-localmaker-contract-unsupported answered 500: ValueError: cannot decode "
        "application/x-localmaker-contract-unsupported")
    assert set(_outcomes(run).values()) == {Outcome.PASSED, Outcome.FAILED}  # the rest ran, and passed
    assert run.failed
    _assert_deleted(contract_session, run)


def test_a_model_fn_that_raises_fails_ping_with_the_failure_reason_and_skips_the_rest(contract_session):
    run = run_contract(contract_session, _broken("model_fn_raises"), DEFAULT_CASES)
    assert [result.name for result in run.results] == [*PROBE_CHECKS, "example: smoke"]
    ping, *rest = run.results
    assert ping.outcome is Outcome.FAILED
    assert "failed to start" in ping.reason
    assert "RuntimeError: weights are missing: expected model.safetensors next to config.json" in ping.reason
    assert {result.outcome for result in rest} == {Outcome.SKIPPED}
    assert all(result.reason == "not run: the endpoint never became healthy" for result in rest)
    _assert_deleted(contract_session, run)


def test_tiny_sd_with_its_examples_passes_every_check(contract_session, tiny_sd_dir):
    cases = parse_examples("\n".join(json.dumps(line) for line in [
        {"name": "json", "body": {"inputs": "a red square", "parameters": {"num_inference_steps": 2, "seed": 7}},
         "expect_json": {"seeds": [7], "parameters": {"num_inference_steps": 2, "height": 64, "width": 64}}},
        {"name": "png", "body": {"inputs": "a red square", "parameters": {"num_inference_steps": 1, "seed": 7}},
         "accept": "image/png"},
        {"name": "no steps", "body": {"inputs": "a red square", "parameters": {"num_inference_steps": 0}},
         "expect_status": 400, "expect_json": {"error": {"code": "InvalidInput"}}},
    ]), "sd-examples")
    run = run_contract(contract_session, ContractTarget(source=str(tiny_sd_dir), startup_timeout_s=180), cases)
    assert _failed(run) == {}
    assert _outcomes(run) == {name: Outcome.PASSED for name in
                              [*PROBE_CHECKS, "example: json", "example: png", "example: no steps"]}
    content_types = next(result for result in run.results if result.name == "content-types")
    assert content_types.reason == "2xx for application/json -> application/json, application/json -> image/png"
    _assert_deleted(contract_session, run)


def test_the_cli_names_a_lying_content_type_exits_1_and_writes_junit(tmp_path, localmaker_home):
    report = tmp_path / "contract.xml"
    done = subprocess.run(
        [sys.executable, "-m", "localmaker.cli", "contract-test", str(ECHO_MODEL),
         "--entry-point", str(HANDLERS / "wrong_content_type.py"), "--junit-xml", str(report),
         "--startup-timeout", "120"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    rows = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()
            if line.split() and line.split()[0] in PROBE_CHECKS}
    assert rows == {name: "FAIL" if name == "response-content-type" else "PASS" for name in PROBE_CHECKS}
    assert "example: smoke" in done.stdout
    assert "7 passed, 1 failed, 0 skipped" in done.stdout

    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("8", "1")
    failures = [case for case in suite.iter("testcase") if case.find("failure") is not None]
    assert [case.get("name") for case in failures] == ["response-content-type"]
    message = failures[0].find("failure").get("message")
    assert "(200, Content-Type application/json): the body is not JSON" in message
    assert "b\"echo: {'inputs': 'contract test'}\"" in message
