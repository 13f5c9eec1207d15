"""`localmaker deploy`, `update` and `describe` against a real `localmaker up`, with the records commands'
--json beside them: an endpoint put up, called, changed and read back without a line of Python."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from localmaker.model.artifact import pack_handler
from tests.cli.test_conventions import run_into_a_closed_pipe
from tests.e2e.conftest import aws_env, running_up

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "localmaker.cli"]
# The second model: no weights, so it starts at once; it answers with what its environment says.
GREETER = """
import json, os

def model_fn(model_dir):
    return os.environ.get("GREETING", "unset")

def transform_fn(model, body, content_type, accept):
    return json.dumps({"greeting": model, "pid": os.getpid()}), "application/json"
"""


BROKEN = "def model_fn(model_dir):\n    raise RuntimeError('the weights are corrupt')\n"


@pytest.fixture(scope="module")
def up(localmaker_home) -> Iterator[str]:
    with running_up() as (_, url):
        yield url


def cli(url: str, *argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in aws_env(url).items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=timeout, env=env)


def post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return dict(json.load(answer))


def test_deploy_invoke_update_describe_end_to_end(up, tiny_qwen3_dir, tmp_path):
    deployed = cli(up, "deploy", str(tiny_qwen3_dir), "--endpoint-name", "cli-search")
    assert deployed.returncode == 0, deployed.stderr
    lines = deployed.stdout.splitlines()
    assert lines[0] == (f"[localmaker] packing {tiny_qwen3_dir} and deploying it as endpoint cli-search on "
                        "1 x ml.m5.large")
    assert re.fullmatch(r"\[localmaker\] Creating endpoint cli-search -*!", lines[1]), lines[1]
    invoke_url = f"{up}/endpoints/cli-search/invocations"
    assert lines[2:] == ["endpoint cli-search is InService", f"invoke URL: {invoke_url}"]
    assert len(post(invoke_url, {"inputs": ["hello"]})["embeddings"]) == 1  # the printed URL answers plain HTTP

    invoked = cli(up, "invoke", "cli-search", "--body", '{"inputs": ["a", "b"]}', "--json")
    assert invoked.returncode == 0, invoked.stderr
    record = json.loads(invoked.stdout)  # the whole of stdout is one JSON document
    assert (record["EndpointName"], record["ContentType"], record["InvokedProductionVariant"]) == \
        ("cli-search", "application/json", "AllTraffic")
    assert len(record["Body"]["embeddings"]) == 2

    again = cli(up, "deploy", str(tiny_qwen3_dir), "--endpoint-name", "cli-search")
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr == ("localmaker: error: endpoint 'cli-search' already exists: `localmaker update cli-search "
                            "--model ...` moves it to another model, `localmaker delete cli-search` removes it; or "
                            "choose another --endpoint-name\n")

    greeter = pack_handler(GREETER, tmp_path / "greeter.tar.gz")
    swapped = cli(up, "update", "cli-search", "--model", str(greeter), "--env", "GREETING=hello from v2")
    assert swapped.returncode == 0, swapped.stderr
    assert swapped.stdout.splitlines()[0] == (f"[localmaker] updating endpoint cli-search to 1 x ml.m5.large serving "
                                              f"{greeter}")
    assert swapped.stdout.splitlines()[-1] == f"invoke URL: {invoke_url}"
    assert post(invoke_url, {})["greeting"] == "hello from v2"

    scaled = cli(up, "update", "cli-search", "--instance-count", "2")
    assert scaled.returncode == 0, scaled.stderr
    assert re.fullmatch(r"\[localmaker\] updating endpoint cli-search to 2 x ml\.m5\.large \(model cli-search-\S+\)",
                        scaled.stdout.splitlines()[0]), scaled.stdout
    assert len({post(invoke_url, {})["pid"] for _ in range(4)}) == 2  # round-robin over two new instances
    assert post(invoke_url, {})["greeting"] == "hello from v2"  # the model and its environment were kept

    described = cli(up, "describe", "cli-search", "--json")
    assert described.returncode == 0, described.stderr
    endpoint = json.loads(described.stdout)
    assert endpoint["EndpointStatus"] == "InService" and "ResponseMetadata" not in endpoint
    assert endpoint["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    shown = cli(up, "describe", "cli-search")
    assert shown.returncode == 0, shown.stderr
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in shown.stdout.splitlines())
    assert rows["EndpointStatus"] == "InService"
    assert rows["EndpointConfigName"] == endpoint["EndpointConfigName"]
    assert re.fullmatch(r"2 x ml\.m5\.large serving model cli-search-\S+", rows["Variant AllTraffic"])
    assert rows["InvokeUrl"] == invoke_url

    listed = cli(up, "endpoints", "--json")
    assert listed.returncode == 0, listed.stderr
    [summary] = json.loads(listed.stdout)
    assert summary["EndpointName"] == "cli-search" and len(summary["Instances"]) == 2
    assert all(i["Url"].startswith("http://127.0.0.1:") for i in summary["Instances"])

    logs = cli(up, "logs", "cli-search", "--json")
    assert logs.returncode == 0, logs.stderr
    events = [json.loads(line) for line in logs.stdout.splitlines()]  # JSON Lines: every line an object
    assert events and {"logGroupName", "logStreamName", "timestamp", "message"} <= set(events[0])
    assert all(e["logGroupName"] == "/aws/sagemaker/Endpoints/cli-search" for e in events)

    piped = run_into_a_closed_pipe(["endpoints", "--endpoint-url", up])  # `localmaker endpoints | head -1`
    assert (piped.returncode, piped.stderr) == (1, "")


def test_deploy_refuses_bad_input_before_creating_anything(up, tmp_path):
    cases = [
        (["deploy", str(tmp_path / "missing.tar.gz"), "--endpoint-name", "x"],
         f"localmaker: error: model archive {tmp_path / 'missing.tar.gz'} does not exist: give the path of a "
         "model.tar.gz, a model directory or a named source such as tiny-qwen3 or minilm\n"),
        (["deploy", "no-such-model", "--endpoint-name", "x"],
         "localmaker: error: unknown model source 'no-such-model'"),
        (["deploy", "tiny-qwen3", "--endpoint-name", "bad_name"], "localmaker: error: endpoint_name 'bad_name' is not "
                                                                  "a valid SageMaker name"),
        (["update", "nowhere", "--instance-count", "2"],
         "localmaker: error: endpoint 'nowhere' does not exist, so there is nothing to update: `localmaker endpoints` "
         "lists them; `localmaker deploy` creates one\n"),
        (["describe", "nowhere"], "localmaker: error: An error occurred (ValidationException) when calling the "
                                  "DescribeEndpoint operation: Could not find endpoint"),
    ]
    for argv, error in cases:
        done = cli(up, *argv, timeout=60)
        assert done.returncode == 1, (argv, done.stderr)
        assert done.stderr.startswith(error), (argv, done.stderr)
        assert "Traceback" not in done.stderr
    listed = cli(up, "endpoints", "--json", timeout=60)
    assert [e["EndpointName"] for e in json.loads(listed.stdout)] in ([], ["cli-search"])  # nothing was created


def test_a_model_that_cannot_load_fails_the_deploy_with_its_reason_and_what_to_do(up, tmp_path):
    broken = pack_handler(BROKEN, tmp_path / "broken.tar.gz")
    done = cli(up, "deploy", str(broken), "--endpoint-name", "cli-broken")
    assert done.returncode == 1
    assert re.fullmatch(r"\[localmaker\] Creating endpoint cli-broken -*", done.stdout.splitlines()[-1])
    assert done.stderr.startswith("localmaker: error: endpoint 'cli-broken' failed to start: ")
    assert "RuntimeError: the weights are corrupt" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.endswith("`localmaker delete cli-broken` removes it\n")
    assert cli(up, "delete", "cli-broken", timeout=60).returncode == 0


def test_an_update_to_a_model_that_cannot_load_is_rolled_back_and_fails(up, tmp_path):
    greeter = pack_handler(GREETER, tmp_path / "greeter.tar.gz")
    deployed = cli(up, "deploy", str(greeter), "--endpoint-name", "cli-rollback", "--env", "GREETING=v1")
    assert deployed.returncode == 0, deployed.stderr
    broken = pack_handler(BROKEN, tmp_path / "broken.tar.gz")
    done = cli(up, "update", "cli-rollback", "--model", str(broken))
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("localmaker: error: endpoint 'cli-rollback' was not updated and still serves "
                                  "'cli-rollback': ")
    assert "RuntimeError: the weights are corrupt" in done.stderr and "Traceback" not in done.stderr
    assert post(f"{up}/endpoints/cli-rollback/invocations", {})["greeting"] == "v1"  # it kept answering
    assert cli(up, "delete", "cli-rollback", timeout=60).returncode == 0
