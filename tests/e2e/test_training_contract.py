"""Training jobs under the SageMaker training contract, with a small script of the user's own."""

from __future__ import annotations

import json
import textwrap
import urllib.request

import pytest
from botocore.exceptions import ClientError

from localmaker import ConfigurationError, TrainingError
from localmaker.deploy import Estimator
from tests.e2e.conftest import ROLE, artifact_member

pytestmark = pytest.mark.e2e

CONTRACT_SCRIPT = """
    import argparse, json, os, pathlib, sys
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--name")
    parser.add_argument("--ratio", type=float)
    args = parser.parse_args()
    data = pathlib.Path(os.environ["SM_CHANNEL_TRAINING"])
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    model = pathlib.Path(os.environ["SM_MODEL_DIR"])
    (model / "weights.json").write_text(json.dumps({
        "args": vars(args), "argv": sys.argv[1:], "files": files,
        "hps": json.loads(os.environ["SM_HPS"]), "channels": json.loads(os.environ["SM_CHANNELS"]),
        "current_host": os.environ["SM_CURRENT_HOST"], "cwd_has_script": pathlib.Path("train.py").is_file(),
        "env_var": os.environ.get("MY_FLAG")}))
    out = pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"])
    (out / "report.txt").write_text("done")
    for step in range(1, 4):
        print(f"[localmaker:progress] step={step} total=3 loss={1.0 / step:.6f}", flush=True)
    print("training finished")
"""


def _source(tmp_path, script: str):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train.py").write_text(textwrap.dedent(script))
    return folder


def test_the_script_runs_under_the_sagemaker_training_contract(session, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("1")
    (data / "sub" / "b.txt").write_text("2")
    session.s3_client.create_bucket(Bucket="training-data")
    for path in ("a.txt", "sub/b.txt"):
        session.s3_client.upload_file(str(data / path), "training-data", f"sets/one/{path}")
    estimator = Estimator(entry_point="train.py", source_dir=_source(tmp_path, CONTRACT_SCRIPT), role=ROLE,
                          instance_type="ml.m5.xlarge", hyperparameters={"epochs": 3, "name": "run a", "ratio": 0.5},
                          output_path="s3://my-output/jobs", env={"MY_FLAG": "on"}, sagemaker_session=session)
    estimator.fit("s3://training-data/sets/one", job_name="contract-job")

    described = session.sagemaker_client.describe_training_job(TrainingJobName="contract-job")
    assert described["TrainingJobStatus"] == "Completed"
    assert estimator.model_data == "s3://my-output/jobs/contract-job/output/model.tar.gz"
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == estimator.model_data
    assert described["FinalMetricDataList"][0]["Value"] == pytest.approx(1 / 3, abs=1e-6)
    recorded = json.loads(artifact_member(session, estimator.model_data, "weights.json"))
    assert recorded["args"] == {"epochs": 3, "name": "run a", "ratio": 0.5}
    assert recorded["files"] == ["a.txt", "sub/b.txt"]
    assert recorded["hps"] == {"epochs": 3, "name": "run a", "ratio": 0.5}
    assert recorded["channels"] == ["training"]
    assert recorded["current_host"] == "algo-1" and recorded["cwd_has_script"] and recorded["env_var"] == "on"
    output = estimator.model_data.replace("model.tar.gz", "output.tar.gz")
    assert artifact_member(session, output, "report.txt") == b"done"
    assert "training finished" in capsys.readouterr().out  # the log was streamed

    log_route = f"{session.endpoint_url}/_localmaker/training-jobs/contract-job/log"
    with urllib.request.urlopen(f"{log_route}?offset=0", timeout=10) as whole:
        size = int(whole.headers["X-Log-Next-Offset"])
        assert b"training finished" in whole.read()
    with urllib.request.urlopen(f"{log_route}?offset={size}", timeout=10) as tail:  # nothing new yet
        assert (tail.status, tail.read(), tail.headers["X-Log-Next-Offset"]) == (200, b"", str(size))
    # Past the end, the file must have been rotated (cut to its marker) since the caller's last read: the
    # log starts again from its beginning. Never a 500, even for offsets seek() cannot take.
    for beyond in (size + 1, 2**63, 10**30):
        with urllib.request.urlopen(f"{log_route}?offset={beyond}", timeout=10) as again:
            assert (again.status, again.headers["X-Log-Next-Offset"]) == (200, str(size))
            assert b"training finished" in again.read()


def test_a_crash_fails_the_job_uploads_nothing_and_the_control_plane_keeps_serving(session, tmp_path):
    script = """
        import os, pathlib
        pathlib.Path(os.environ["SM_MODEL_DIR"], "half.bin").write_text("partial")
        raise RuntimeError("the loss went to NaN at step 12")
    """
    estimator = Estimator(entry_point="train.py", source_dir=_source(tmp_path, script), role=ROLE,
                          instance_type="ml.m5.large", output_path="s3://my-output/crash", sagemaker_session=session)
    with pytest.raises(TrainingError, match="the loss went to NaN at step 12") as caught:
        estimator.fit(f"file://{tmp_path}", job_name="crashing-job")
    assert caught.value.status == "Failed"
    described = session.sagemaker_client.describe_training_job(TrainingJobName="crashing-job")
    assert described["TrainingJobStatus"] == "Failed"
    assert "ExitCode 1" in described["FailureReason"]
    # ModelArtifacts names where the model was to go (a required member); nothing was uploaded there.
    with pytest.raises(ClientError):
        session.s3_client.head_object(Bucket="my-output", Key="crash/crashing-job/output/model.tar.gz")
    assert session.sagemaker_client.list_training_jobs()["TrainingJobSummaries"]  # still answering


def test_the_failure_file_becomes_the_failure_reason(session, tmp_path):
    script = """
        import os, pathlib, sys
        pathlib.Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text("resolution must be a multiple of 8")
        sys.exit(2)
    """
    estimator = Estimator(entry_point="train.py", source_dir=_source(tmp_path, script), role=ROLE,
                          instance_type="ml.m5.large", sagemaker_session=session)
    with pytest.raises(TrainingError):
        estimator.fit(f"file://{tmp_path}", job_name="failure-file-job", logs=False)
    reason = session.sagemaker_client.describe_training_job(TrainingJobName="failure-file-job")["FailureReason"]
    assert reason == "AlgorithmError: resolution must be a multiple of 8"


@pytest.mark.parametrize(("make_channel", "fragment"), [
    (lambda tmp: f"file://{tmp}/does-not-exist", "does not exist"),
    (lambda tmp: f"file://{(tmp / 'empty').mkdir() or tmp / 'empty'}", "is empty"),
    (lambda tmp: "s3://no-such-bucket/data", "cannot read"),
])
def test_unusable_channels_fail_the_job_fast_with_the_fix(session, tmp_path, make_channel, fragment):
    estimator = Estimator(entry_point="train.py", source_dir=_source(tmp_path, CONTRACT_SCRIPT), role=ROLE,
                          instance_type="ml.m5.large", sagemaker_session=session)
    with pytest.raises(TrainingError, match=fragment) as caught:
        estimator.fit(make_channel(tmp_path), logs=False)
    assert "channel 'training'" in caught.value.failure_reason


def test_training_arguments_are_checked_up_front(session, tmp_path):
    with pytest.raises(ConfigurationError, match="instance_count=1"):
        Estimator(entry_point="train.py", source_dir=tmp_path, role=ROLE, instance_type="ml.m5.large",
                  instance_count=2, sagemaker_session=session)
    estimator = Estimator(entry_point="train.py", source_dir=tmp_path, role=ROLE, instance_type="ml.m5.large",
                          sagemaker_session=session)
    with pytest.raises(ConfigurationError, match="must be an s3://bucket/prefix or file:///path"):
        estimator.fit("/plain/path")
    with pytest.raises(ConfigurationError, match="entry_point 'train.py' is not in source_dir"):
        estimator.fit(f"file://{tmp_path}")
