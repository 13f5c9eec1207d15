"""`localmaker up` as its own process, driven by an ordinary boto3 script configured only by env vars."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from localmaker.deploy import Session
from localmaker.model.artifact import pack
from tests.e2e.conftest import CLI, ROLE, aws_env
from tests.process_probe import group_members

pytestmark = pytest.mark.e2e

BOTO3_SCRIPT = """
    import boto3, json, sys
    archive = sys.argv[1]
    s3, sm, rt = boto3.client("s3"), boto3.client("sagemaker"), boto3.client("sagemaker-runtime")
    s3.create_bucket(Bucket="models")
    s3.upload_file(archive, "models", "qwen/model.tar.gz")
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-gpu-py311",
                          "ModelDataUrl": "s3://models/qwen/model.tar.gz",
                          "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}})
    sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[{"VariantName": "AllTraffic",
        "ModelName": "m", "InitialInstanceCount": 2, "InstanceType": "ml.g5.xlarge"}])
    sm.create_endpoint(EndpointName="e", EndpointConfigName="c")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="e", WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    answer = rt.invoke_endpoint(EndpointName="e", ContentType="application/json", Body=json.dumps({"inputs": ["hi"]}))
    print(json.dumps({"variant": answer["InvokedProductionVariant"], "type": answer["ContentType"],
                      "rows": len(json.loads(answer["Body"].read())["embeddings"])}))
"""


def test_a_plain_boto3_script_deploys_and_sigterm_leaves_no_process(control_plane, tmp_path, tiny_qwen3_dir):
    process, url = control_plane
    archive = pack(tiny_qwen3_dir, tmp_path / "model.tar.gz")
    script = tmp_path / "deploy.py"
    script.write_text(f"ROLE = {ROLE!r}\n" + textwrap.dedent(BOTO3_SCRIPT))
    done = subprocess.run([sys.executable, str(script), str(archive)], capture_output=True, text=True,
                          timeout=180, env=aws_env(url))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"variant": "AllTraffic", "type": "application/json",
                                                              "rows": 1}

    listed = subprocess.run([*CLI, "endpoints"], capture_output=True, text=True, timeout=60, env=aws_env(url))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("e\tInService\thttp://127.0.0.1:")
    invoked = subprocess.run([*CLI, "invoke", "e", "--body", '{"inputs": "hello"}'], capture_output=True,
                             text=True, timeout=60, env=aws_env(url))
    assert invoked.returncode == 0, invoked.stderr
    assert len(json.loads(invoked.stdout)["embeddings"]) == 1
    bad = subprocess.run([*CLI, "invoke", "e", "--body", "{broken"], capture_output=True, text=True, timeout=60,
                         env=aws_env(url))
    assert bad.returncode == 1 and "ModelError" in bad.stderr and "Traceback" not in bad.stderr

    deadline = time.monotonic() + 20  # the log shipper copies new lines about once a second
    while True:
        shown = subprocess.run([*CLI, "logs", "e"], capture_output=True, text=True, timeout=60, env=aws_env(url))
        assert shown.returncode == 0, shown.stderr
        if "POST /invocations" in shown.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(set(re.findall(r"^\[AllTraffic/i-[0-9a-f]{17}\] ", shown.stdout, re.M))) == 2, shown.stdout
    assert "POST /invocations" in shown.stdout

    groups = [i.pid for i in Session(endpoint_url=url).local_endpoint("e").instances]
    assert len(groups) == 2 and all(group_members(g) for g in groups)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert not any(group_members(g) for g in groups), "instances outlived SIGTERM to localmaker up"
    output = process.stdout.read() if process.stdout else ""
    assert "stopped; every process it started has been reaped" in output
    # The last log lines and metrics go out while the control plane still listens, not into a closed port.
    assert "could not ship" not in output and "could not publish" not in output and "Traceback" not in output


def test_delete_through_the_cli_stops_the_endpoint(control_plane, tmp_path, tiny_qwen3_dir):
    _, url = control_plane
    from localmaker.deploy import Model, Session

    with Session(endpoint_url=url) as attached:
        predictor = Model(model_data=str(tiny_qwen3_dir), role=ROLE, sagemaker_session=attached).deploy(
            initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="to-delete")
        groups = [i.pid for i in attached.local_endpoint("to-delete").instances]
        assert predictor.endpoint_name == "to-delete"
    deleted = subprocess.run([*CLI, "delete", "to-delete"], capture_output=True, text=True, timeout=60,
                             env=aws_env(url))
    assert deleted.returncode == 0, deleted.stderr
    deadline = time.monotonic() + 15
    while any(group_members(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(group_members(g) for g in groups)
    missing = subprocess.run([*CLI, "delete", "to-delete"], capture_output=True, text=True, timeout=60,
                             env=aws_env(url))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
