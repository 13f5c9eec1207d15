"""Failures point to their evidence, as a user's script meets them: the error names the instance log and
ends with the user's own file and line; a mistyped endpoint name is "not found" with the close names; the
/tmp/localmaker-* work folder goes when the session closes, unless asked to stay, and says so."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

# Line numbers matter: the errors below must name line 7 (predict_fn) and line 3 (the syntax error).
BROKEN_PREDICT = """import os


def model_fn(model_dir):
    return {"pid": os.getpid()}
def predict_fn(data, model):
    return data["inputs"] / 2
"""
BROKEN_SYNTAX = """import os

def model_fn(model_dir:
    return 1
"""

SCRIPT = """
import pathlib, sys
from localmaker import Model, Session
from localmaker.errors import EndpointNotFound
from localmaker.model.artifact import pack_handler
from localmaker.spec.names import PLACEHOLDER_ROLE

here = pathlib.Path(sys.argv[1])
archive = pack_handler((here / "inference.py").read_text(), here / "model.tar.gz")
with Session() as session:
    predictor = Model(model_data=str(archive), role=PLACEHOLDER_ROLE, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="embedder-v2")
    try:
        session.local_endpoint("embeder-v2")
    except EndpointNotFound as exc:
        print(f"not found: {exc}", flush=True)
    from localmaker.deploy.serializers import JSONSerializer
    predictor.serializer = JSONSerializer()
    predictor.predict({"inputs": "a sentence"})
"""


def _run(tmp_path: Path, handler: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "inference.py").write_text(handler)
    (tmp_path / "script.py").write_text(textwrap.dedent(SCRIPT))
    scratch = tmp_path / "tmp"  # where tempfile puts /tmp/localmaker-*, so that leftovers can be counted
    scratch.mkdir()
    environment = {k: v for k, v in os.environ.items() if k != "LOCALMAKER_KEEP_WORK"}
    environment.update(TMPDIR=str(scratch), HF_HUB_OFFLINE="1", **env)
    return subprocess.run([sys.executable, str(tmp_path / "script.py"), str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env=environment)


def _work_folders(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "tmp").glob("localmaker-*"))


def test_a_500_names_the_user_line_and_the_log_and_the_work_folder_goes(tmp_path, localmaker_home):
    done = _run(tmp_path, BROKEN_PREDICT)

    assert done.returncode == 1
    assert ("not found: endpoint 'embeder-v2' not found on the control plane at http://127.0.0.1:"
            in done.stdout), done.stdout
    assert done.stdout.rstrip().endswith("; did you mean 'embedder-v2'? It runs 'embedder-v2'."), done.stdout
    assert "HTTP Error" not in done.stdout + done.stderr
    error = re.search(r"^localmaker\.errors\.ModelError: .*", done.stderr, re.M | re.S)
    assert error, done.stderr
    lines = error.group(0).splitlines()
    assert re.fullmatch(
        r"localmaker\.errors\.ModelError: An error occurred \(ModelError\) when calling the InvokeEndpoint "
        r"operation: Received server error \(500\) from endpoint 'embedder-v2' with message \"TypeError: "
        r"unsupported operand type\(s\) for /: 'str' and 'int' \(the traceback is in the instance log\)\"\. "
        r"See the instance log (?P<log>\S+/logs/i-[0-9a-f]{17}\.log) for more information\. Its traceback ends:",
        lines[0]), lines[0]
    assert re.fullmatch(r'  File "\S+/code/inference\.py", line 7, in predict_fn', lines[1]), lines
    assert lines[2] == '    return data["inputs"] / 2'
    assert lines[-1] == "TypeError: unsupported operand type(s) for /: 'str' and 'int'"
    assert "handlers.py" not in error.group(0) and "model_executor.py" not in error.group(0)
    # The session closed: its folder is gone, and the user is told where the cited log went and how to keep it.
    assert _work_folders(tmp_path) == []
    assert re.search(r"^\[localmaker\] removed work folder \S+/tmp/localmaker-\w+ with the instance log an error "
                     r"pointed to; keep it with Session\(keep_work=True\) or LOCALMAKER_KEEP_WORK=1$",
                     done.stderr, re.M), done.stderr


def test_a_failed_deploy_names_the_user_line_and_keeps_the_folder_when_asked(tmp_path, localmaker_home):
    done = _run(tmp_path, BROKEN_SYNTAX, LOCALMAKER_KEEP_WORK="1")

    assert done.returncode == 1
    error = re.search(r"^localmaker\.errors\.DeploymentError: .*", done.stderr, re.M | re.S)
    assert error, done.stderr
    lines = error.group(0).splitlines()
    first = re.fullmatch(
        r"localmaker\.errors\.DeploymentError: endpoint 'embedder-v2' failed to start: loading inference\.py "
        r"failed: SyntaxError: '\(' was never closed \(inference\.py, line 3\)\. See the instance log "
        r"(?P<log>\S+/logs/i-[0-9a-f]{17}\.log) for more information\. Its traceback ends:", lines[0])
    assert first, lines[0]
    assert re.fullmatch(r'  File "\S+/code/inference\.py", line 3', lines[1]), lines
    assert lines[2] == "    def model_fn(model_dir:"
    assert "SyntaxError: '(' was never closed" in lines[3:5]
    folders = _work_folders(tmp_path)
    assert len(folders) == 1
    assert f"[localmaker] kept work folder {folders[0]}\n" in done.stderr
    cited = Path(first.group("log"))
    assert cited.is_relative_to(folders[0]) and "SyntaxError" in cited.read_text()
