"""Hostile model.tar.gz files cost the control plane nothing: other endpoints answer while they are judged.

Unmodified boto3 against an embedded control plane. One endpoint serves; six more are created at once
from archives built to hurt the reader (tests/model/archive_bombs.py). While they are unpacked, in child
processes, a probe keeps invoking and describing the serving endpoint and a sampler reads this process's
VmRSS (the control plane runs in it). Before the unpacking moved out of the control plane, the
100,000-digit PAX header alone held the interpreter lock for about 30 s, and the 128 MiB long name grew
the process by several times its size.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from localmaker.control_plane.server import ControlPlane
from localmaker.spec.container_images import default_image
from localmaker.spec.instance_types import CATALOGUE
from tests.model import archive_bombs as bombs
from tests.reliability.conftest import code_only_archive, wait_until

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = default_image("us-east-1", CATALOGUE["ml.m5.large"])
BUCKET = "bombs"
HANDLER = """
    def model_fn(model_dir):
        return "tiny"

    def input_fn(body, content_type):
        return body

    def predict_fn(data, model):
        return data

    def output_fn(prediction, accept):
        return prediction, "application/octet-stream"
"""
MAX_ANSWER_S = 3.0  # a loaded 2-core machine; the old code stalled it 21 s
MAX_RSS_GROWTH = 64 * 1024**2

# name -> (builder, what FailureReason must say)
HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "pax-header": (lambda p: bombs.huge_pax_header(p, 100_000),
                   "declares 100000 bytes, over the 65536-byte limit on headers"),
    "cve-record": (lambda p: bombs.cve_pax_record(p, 60_000),
                   "holds a run of 60000 digits, over the limit of 256 (CVE-2024-6232)"),
    "long-name": (lambda p: bombs.gnu_long_name(p, declared=1 << 30, present=128 << 20),
                  "the GNU long-name header '././@LongLink' at byte 0 declares 1073741824 bytes"),
    "deep-tree": (lambda p: bombs.nested_folders(p, 1000), "is 129 folders deep, over the limit of 128"),
    "members": (lambda p: bombs.many_members(p, 100_001),
                "member 'f100000' is one too many: more than 100000 members"),
    "header-chain": (lambda p: bombs.extension_chain(p, 2000),
                     "is extension header number 5 in a row before a member, over the limit of 4"),
}


def client(control_plane: ControlPlane, service: str) -> Any:
    return boto3.client(service, endpoint_url=control_plane.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1}, read_timeout=120))


def vm_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def deploy(sagemaker: Any, name: str, model_data_url: str) -> None:
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": IMAGE, "ModelDataUrl": model_data_url, "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}})
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])


def status(sagemaker: Any, name: str) -> str:
    return str(sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"])


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory, localmaker_home: Path) -> Iterator[ControlPlane]:
    """A control plane with one endpoint, "serving", InService."""
    root = tmp_path_factory.mktemp("isolation")
    control_plane = ControlPlane(work_root=root / "work", startup_timeout_s=60).start()
    try:
        s3, sagemaker = client(control_plane, "s3"), client(control_plane, "sagemaker")
        s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(str(code_only_archive(root / "model", HANDLER)), BUCKET, "serving.tar.gz")
        deploy(sagemaker, "serving", f"s3://{BUCKET}/serving.tar.gz")
        sagemaker.create_endpoint(EndpointName="serving", EndpointConfigName="serving")
        wait_until(lambda: status(sagemaker, "serving") == "InService", "the serving endpoint", 90)
        yield control_plane
    finally:
        control_plane.stop()


def test_hostile_archives_neither_stall_nor_grow_the_control_plane(serving: ControlPlane, tmp_path: Path) -> None:
    s3, sagemaker = client(serving, "s3"), client(serving, "sagemaker")
    runtime = client(serving, "sagemaker-runtime")
    for name, (build, _) in HOSTILE.items():
        s3.upload_file(str(build(tmp_path / f"{name}.tar.gz")), BUCKET, f"{name}.tar.gz")
        deploy(sagemaker, name, f"s3://{BUCKET}/{name}.tar.gz")
    assert runtime.invoke_endpoint(EndpointName="serving", Body=b"warm")["Body"].read() == b"warm"

    done = threading.Event()
    answers: list[float] = []
    failures: list[str] = []
    rss: list[int] = []

    def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            try:
                body = runtime.invoke_endpoint(EndpointName="serving", Body=b"ping")["Body"].read()
                assert body == b"ping" and status(sagemaker, "serving") == "InService"
            except Exception as exc:  # noqa: BLE001 - recorded and asserted on below
                failures.append(repr(exc))
            answers.append(time.monotonic() - started)

    def sample() -> None:
        while not done.is_set():
            rss.append(vm_rss())
            time.sleep(0.005)

    baseline = statistics.median(vm_rss() for _ in range(20))
    threads = [threading.Thread(target=probe), threading.Thread(target=sample)]
    for thread in threads:
        thread.start()
    try:
        for name in HOSTILE:
            sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
        wait_until(lambda: all(status(sagemaker, name) != "Creating" for name in HOSTILE),
                   "every hostile endpoint to be refused", 120)
    finally:
        done.set()
        for thread in threads:
            thread.join()

    growth = max(rss) - baseline
    print(f"\nprobe: {len(answers)} answers, slowest {max(answers) * 1000:.0f} ms; "
          f"RSS {baseline / 1024**2:.0f} MiB -> peak {max(rss) / 1024**2:.0f} MiB")
    assert failures == []
    assert len(answers) >= 5, f"the probe ran only {len(answers)} times while the archives were unpacked"
    assert max(answers) < MAX_ANSWER_S, f"the serving endpoint once took {max(answers):.1f} s to answer"
    assert growth < MAX_RSS_GROWTH, f"the control plane grew by {growth / 1024**2:.0f} MiB"
    assert bombs.unpack_children(os.getpid()) == []
    for name, (_, why) in HOSTILE.items():
        described = sagemaker.describe_endpoint(EndpointName=name)
        assert described["EndpointStatus"] == "Failed", (name, described)
        reason = described["FailureReason"]
        url = sagemaker.describe_model(ModelName=name)["PrimaryContainer"]["ModelDataUrl"]
        # The artifact is named as the user knows it, then the refusal names the member and the limit.
        assert reason.startswith(f"the ModelDataUrl {url} cannot be unpacked: refusing to unpack "), (name, reason)
        assert why in reason, (name, reason)
