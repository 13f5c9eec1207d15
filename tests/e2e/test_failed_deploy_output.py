"""A failed deployment tells the caller once, clearly; the provisioning traceback goes to the control
plane's log, not into the console between the lines deploy() prints."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.e2e


def test_a_failed_deploy_prints_one_error_and_logs_the_traceback(tmp_path, localmaker_home):
    work = tmp_path / "work"
    script = tmp_path / "deploy.py"
    script.write_text(textwrap.dedent(f"""
        from localmaker import Model, Session
        from localmaker.model.artifact import pack_handler
        from localmaker.spec.names import PLACEHOLDER_ROLE

        archive = pack_handler("def model_fn(model_dir):\\n    raise RuntimeError('boom')\\n",
                               __import__("pathlib").Path({str(tmp_path / 'model.tar.gz')!r}))
        with Session(work_root={str(work)!r}) as session:
            Model(model_data=str(archive), role=PLACEHOLDER_ROLE, sagemaker_session=session).deploy(
                initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="boom")
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "DeploymentError: endpoint 'boom' failed to start: model_fn failed: RuntimeError: boom" in done.stderr
    assert done.stderr.count("Traceback") == 1, done.stderr  # the script's own, nothing from the control plane
    assert "endpoint_runtime.py" not in done.stderr
    log = (work / "control-plane.log").read_text()
    assert "endpoint_runtime.py" in log and "RuntimeError: model_fn failed" in log
