"""Quiet, honest output: what a new user's own commands print, and what lands in the logs they read.

Each test runs what a user runs (a deploy, a training job, the first tiny-sd build) and reads the output
or the log it left: the noise is gone, and the signal is still there.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localmaker.deploy import Estimator, Model, Session
from localmaker.logging_setup import progress_bar
from localmaker.model.artifact import pack_handler
from localmaker.spec.names import PLACEHOLDER_ROLE

REPO = Path(__file__).resolve().parents[2]
SLOW_LOAD_HANDLER = """
    import time

    def model_fn(model_dir):
        time.sleep(3)  # a model that takes a while to load: the control plane polls /ping meanwhile
        return "loaded"

    def predict_fn(data, model):
        return {"model": model}
"""


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    with Session(work_root=tmp_path_factory.mktemp("quiet-output")) as embedded:
        yield embedded


@pytest.fixture(scope="module")
def slow_loading_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_handler(textwrap.dedent(SLOW_LOAD_HANDLER), tmp_path_factory.mktemp("slow") / "model.tar.gz")


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1"}


def _instance_log(session: Session, model_data: Path, name: str) -> str:
    """Deploy ``model_data`` as ``name``, and return its instance's log once it is in service."""
    predictor = Model(model_data=str(model_data), role=PLACEHOLDER_ROLE, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=name)
    try:
        return session.local_endpoint(name).instances[0].log_file.read_text()
    finally:
        predictor.delete_endpoint()


def test_readiness_polls_are_logged_once_per_answer_not_every_250_ms(session, slow_loading_model):
    log = _instance_log(session, slow_loading_model, "slow-loader")
    # About twelve polls came while model_fn slept (3 s at 4 a second); each used to write two lines.
    assert len(re.findall(r'"GET /ping HTTP/1.1" 503 ', log)) == 1, log
    assert log.count("answered 503: the model is still loading") == 1, log
    assert len(re.findall(r'"GET /ping HTTP/1.1" 200 ', log)) == 1, log
    assert "model loaded from" in log


def test_the_built_in_handler_loads_without_library_noise_in_the_instance_log(session, tiny_qwen3_dir):
    log = _instance_log(session, tiny_qwen3_dir, "quiet-builtin")
    assert "loaded embedding model" in log and "model loaded from" in log
    for noise in ("Loading weights", "requires torchvision", "\r"):
        assert noise not in log, log


def test_a_missing_gpu_is_warned_once_per_process(tmp_path, slow_loading_model):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: there is nothing to warn about")
    script = tmp_path / "two_gpu_endpoints.py"
    script.write_text(textwrap.dedent(f"""
        from localmaker import Model, Session
        with Session() as session:
            model = Model(model_data={str(slow_loading_model)!r}, role={PLACEHOLDER_ROLE!r},
                          sagemaker_session=session)
            first = model.deploy(initial_instance_count=1, instance_type="ml.g5.xlarge")
            second = model.deploy(initial_instance_count=1, instance_type="ml.g4dn.xlarge")
            first.delete_endpoint()
            second.delete_endpoint()
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240,
                          env=_subprocess_env())
    assert done.returncode == 0, done.stderr
    warnings = re.findall(r"GPU but this machine has none", done.stderr)
    assert len(warnings) == 1, done.stderr
    assert "two_gpu_endpoints.py:6: UserWarning: ml.g5.xlarge has a NVIDIA A10G GPU" in done.stderr  # the user's line
    assert done.stdout.count("Simulated deployment") == 2


def test_progress_lines_feed_the_bar_and_stay_out_of_the_training_log(session, tmp_path, capfd):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(textwrap.dedent("""
        print("epoch 1 starts", flush=True)
        for step in (1, 2, 3):
            print(f"[localmaker:progress] step={step} total=3 loss={1 / step:.6f}", flush=True)
        print("INFO [localmaker:progress] step=3 total=3 loss=0.333333 (a line of the user's own)", flush=True)
        print("training done", flush=True)
    """))
    (tmp_path / "data.txt").write_text("x")
    estimator = Estimator(entry_point="train.py", source_dir=source, role=PLACEHOLDER_ROLE,
                          instance_type="ml.m5.large", sagemaker_session=session)
    estimator.fit(f"file://{tmp_path / 'data.txt'}", job_name="quiet-progress")
    out, err = capfd.readouterr()

    assert "epoch 1 starts" in out and "training done" in out and "(a line of the user's own)" in out
    assert not re.search(r"^\[localmaker:progress\]", out + err, re.M), out + err
    # stderr is not a terminal here: the bar is whole lines, the last at 3 of 3 with the last loss.
    assert "\r" not in err
    assert re.search(r"training quiet-progress: 100%.*3/3.*loss=0\.333333", err), err

    description = session.sagemaker_client.describe_training_job(TrainingJobName="quiet-progress")
    assert description["FinalMetricDataList"][0]["Value"] == pytest.approx(1 / 3, abs=1e-6)
    logs = session.boto_session.client("logs", endpoint_url=session.endpoint_url)
    group = "/aws/sagemaker/TrainingJobs"
    deadline = time.monotonic() + 15  # the log shipper copies new lines about once a second
    messages: list[str] = []
    while "training done" not in messages and time.monotonic() < deadline:
        (stream,) = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix="quiet-progress/")["logStreams"]
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"],
                                     startFromHead=True)["events"]
        messages = [event["message"] for event in events]
        time.sleep(0.3)
    assert messages == ["epoch 1 starts",
                        "INFO [localmaker:progress] step=3 total=3 loss=0.333333 (a line of the user's own)",
                        "training done"]


def test_the_first_tiny_sd_build_shows_progress_without_library_noise(tmp_path):
    # The real build, with a 4-step prior fit instead of 300 so that it takes seconds.
    script = textwrap.dedent(f"""
        from pathlib import Path
        from localmaker.model.builders import tiny_sd_prior
        from localmaker.model.builders.tiny_qwen3 import build_tiny_qwen3
        from localmaker.model.builders.tiny_sd import build_tiny_sd

        tiny_sd_prior.PRIOR_STEPS = 4
        build_tiny_sd(Path({str(tmp_path / "sd")!r}))
        build_tiny_qwen3(Path({str(tmp_path / "qwen")!r}))
        print("---- the user's own call ----", file=__import__("sys").stderr, flush=True)
        from transformers import CLIPTextModel
        CLIPTextModel.from_pretrained(Path({str(tmp_path / "sd" / "text_encoder")!r}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=_subprocess_env())
    assert done.returncode == 0, done.stderr
    ours, users = done.stderr.split("---- the user's own call ----")
    assert re.search(r"building tiny-sd \(first use only\): 100%.*4/4", ours), ours
    assert "\r" not in ours  # stderr is a pipe: plain lines, no redraws
    for noise in ("requires torchvision", "Writing model shards", "Loading weights", "Loading pipeline components"):
        assert noise not in ours, ours
    assert "Loading weights" in users  # the libraries were put back as they were: the user's bars still show


def test_a_progress_bar_off_a_terminal_writes_whole_lines_between_the_log_lines():
    stream = io.StringIO()  # like a file or a pipe: no isatty
    with progress_bar(total=3, desc="work", unit="item", file=stream, mininterval=0) as bar:
        for item in range(3):
            bar.write(f"log line {item}", file=stream)
            bar.update(1)
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("log line")] == ["log line 0", "log line 1", "log line 2"]
    assert all(line.startswith(("log line", "work:")) for line in lines), lines
    assert lines[-1].startswith("work: 100%") and "3/3" in lines[-1]
