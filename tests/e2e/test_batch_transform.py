"""Batch transform through unmodified boto3: real instances, real files in moto's S3, and faults.

Each job runs a tiny handler (``transform_models.py``) in the same gunicorn container endpoints use; the
tests read the ``.out`` files back, and check that no instance process outlives its job however it ends.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from localmaker.deploy import Session
from localmaker.spec.names import LOCAL_CREDENTIALS, TRANSFORM_LOG_GROUP
from tests.e2e.transform_models import (
    BUCKET,
    create_model,
    ensure_bucket,
    job_request,
    local_job,
    put_lines,
    read_lines,
    wait_for,
)
from tests.process_probe import group_members

pytestmark = pytest.mark.e2e


def _client(session: Session, service: str) -> Any:
    return boto3.client(service, endpoint_url=session.endpoint_url, region_name="us-east-1", **LOCAL_CREDENTIALS)


@pytest.fixture(scope="module")
def clients(session: Session) -> tuple[Any, Any]:
    return _client(session, "s3"), _client(session, "sagemaker")


@pytest.fixture(scope="module")
def model(clients: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    s3, sagemaker = clients
    return create_model(s3, sagemaker, tmp_path_factory.mktemp("transform"), "transform-lengths")


@pytest.fixture(scope="module")
def slow_model(clients: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    s3, sagemaker = clients
    return create_model(s3, sagemaker, tmp_path_factory.mktemp("slow"), "transform-slow", {"SLEEP_S": "0.5"})


def _no_process_left(session: Session, name: str) -> None:
    pids = [i["Pid"] for i in local_job(str(session.endpoint_url), name)["Instances"]]
    assert pids, "the job started no instance"
    assert not any(group_members(pid) for pid in pids), f"instances of {name} outlived it"


def test_jsonl_across_two_instances_joined_and_filtered(session, clients, model):
    s3, sagemaker = clients
    first = [{"id": i, "text": "x" * i} for i in range(6)]
    second = [{"id": 100 + i, "text": "yy" * i} for i in range(4)]
    put_lines(s3, "joined/in/part-1.jsonl", first)
    s3.put_object(Bucket=BUCKET, Key="joined/in/sub/part-2.jsonl.gz",
                  Body=gzip.compress("\n".join(json.dumps(r) for r in second).encode()))
    put_lines(s3, "joined/in-other/ignored.jsonl", [{"id": -1, "text": ""}])  # outside the prefix "joined/in/"
    request = job_request("joined", model, "joined/in/", "joined/out", MaxConcurrentTransforms=2,
                          MaxPayloadInMB=1, Environment={"LOCALMAKER_TEST_FLAG": "1"},
                          DataProcessing={"JoinSource": "Input", "OutputFilter": "$['id','SageMakerOutput']"})
    request["TransformResources"]["InstanceCount"] = 2
    sagemaker.create_transform_job(**request)
    described = sagemaker.describe_transform_job(TransformJobName="joined")
    assert described["TransformJobStatus"] == "InProgress" and "TransformEndTime" not in described

    # The second file is gzip: with CompressionType None it cannot be split into JSON lines...
    described = wait_for(sagemaker, "joined")
    assert described["TransformJobStatus"] == "Failed"
    assert "part-2.jsonl.gz" in described["FailureReason"]
    _no_process_left(session, "joined")

    # ...and with Gzip it is, like the plain one (Gzip is read per file, as AWS reads it).
    s3.delete_object(Bucket=BUCKET, Key="joined/in/part-1.jsonl")
    s3.put_object(Bucket=BUCKET, Key="joined/in/part-1.jsonl.gz",
                  Body=gzip.compress("\n".join(json.dumps(r) for r in first).encode()))
    request["TransformJobName"] = "joined-gzip"
    request["TransformInput"]["CompressionType"] = "Gzip"
    sagemaker.create_transform_job(**request)
    described = wait_for(sagemaker, "joined-gzip")
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert described["TransformEndTime"] >= described["TransformStartTime"]
    assert described["DataProcessing"]["JoinSource"] == "Input"

    answers_1 = read_lines(s3, "joined/out/part-1.jsonl.gz.out")
    answers_2 = read_lines(s3, "joined/out/sub/part-2.jsonl.gz.out")
    assert [a["id"] for a in answers_1] == [r["id"] for r in first]
    assert [a["SageMakerOutput"]["length"] for a in answers_1] == [len(r["text"]) for r in first]
    assert [a["SageMakerOutput"]["length"] for a in answers_2] == [len(r["text"]) for r in second]
    assert all(set(a) == {"id", "SageMakerOutput"} for a in answers_1 + answers_2)
    # The files were spread: each went to its own instance (its own gunicorn worker pid).
    pids_1 = {a["SageMakerOutput"]["pid"] for a in answers_1}
    pids_2 = {a["SageMakerOutput"]["pid"] for a in answers_2}
    assert len(pids_1) == len(pids_2) == 1 and pids_1 != pids_2
    view = local_job(str(session.endpoint_url), "joined-gzip")
    assert view["Progress"] == {"FilesTotal": 2, "FilesDone": 2, "RecordsTotal": 10, "RecordsDone": 10}
    _no_process_left(session, "joined-gzip")

    streams = _client(session, "logs").describe_log_streams(logGroupName=TRANSFORM_LOG_GROUP,
                                                            logStreamNamePrefix="joined-gzip/")["logStreams"]
    assert len(streams) == 2
    listed = sagemaker.list_transform_jobs(NameContains="joined", StatusEquals="Failed")["TransformJobSummaries"]
    assert [s["TransformJobName"] for s in listed] == ["joined"]


def test_csv_from_a_manifest_single_record_with_input_filter(session, clients, model):
    s3, sagemaker = clients
    s3.put_object(Bucket=BUCKET, Key="csv/data/a.csv", Body=b"id-1,1,2\nid-2,3,4\nid-3,5,6\n")
    s3.put_object(Bucket=BUCKET, Key="csv/data/b.csv", Body=b"id-9,10,20\n")
    s3.put_object(Bucket=BUCKET, Key="csv/data/not-listed.csv", Body=b"id-0,0,0\n")
    s3.put_object(Bucket=BUCKET, Key="csv/manifest.json",
                  Body=json.dumps([{"prefix": f"s3://{BUCKET}/csv/data/"}, "a.csv", "b.csv"]).encode())
    request = job_request("csv-manifest", model, "csv/manifest.json", "csv/out", BatchStrategy="SingleRecord",
                          DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"})
    request["TransformInput"].update(ContentType="text/csv")
    request["TransformInput"]["DataSource"]["S3DataSource"]["S3DataType"] = "ManifestFile"
    request["TransformOutput"].update(Accept="text/csv")
    sagemaker.create_transform_job(**request)
    described = wait_for(sagemaker, "csv-manifest")
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    # The id column was filtered out of the request (the model sums what it gets) and joined back.
    read = s3.get_object(Bucket=BUCKET, Key="csv/out/a.csv.out")["Body"].read().decode()
    assert read == "id-1,3.0\nid-2,7.0\nid-3,11.0\n"
    assert s3.get_object(Bucket=BUCKET, Key="csv/out/b.csv.out")["Body"].read() == b"id-9,30.0\n"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="csv/out/not-listed")


@pytest.mark.parametrize(("change", "message"), [
    ({"ModelName": "no-such-model"}, 'Could not find model "arn:aws:sagemaker:us-east-1:123456789012:'
                                     'model/no-such-model".'),
    ({"MaxPayloadInMB": 101}, "Value '101' at 'maxPayloadInMB' failed to satisfy constraint: Member must have "
                              "value less than or equal to 100"),
    ({"MaxPayloadInMB": 20, "MaxConcurrentTransforms": 6}, "MaxConcurrentTransforms (6) x MaxPayloadInMB (20) "
                                                           "must not exceed 100 MB"),
    ({"DataProcessing": {"OutputFilter": "$['account_id']"}},
     'Invalid OutputFilter: "$[\'account_id\']". Unexpected "_" in JsonPath. Supported operators for '
     '"application/jsonlines" are [\'$\', \'[\', \']\', \'*\', \'.\', \' \', \',\', \':\', \'-\', \'\'\']'),
    ({"DataProcessing": {"InputFilter": "$..text"}}, 'Invalid InputFilter: "$..text". Unexpected ".." in JsonPath'),
])
def test_bad_requests_are_refused_as_aws_refuses_them(clients, model, change, message):
    _, sagemaker = clients
    name = f"refused-{abs(hash(message)) % 10**8}"
    with pytest.raises(ClientError) as refused:
        sagemaker.create_transform_job(**job_request(name, model, "x/", "y", **change))
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert message in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as missing:
        sagemaker.describe_transform_job(TransformJobName=name)
    assert "Could not find transform job" in missing.value.response["Error"]["Message"]


def test_missing_input_and_a_duplicate_name(session, clients, model):
    s3, sagemaker = clients
    ensure_bucket(s3)
    sagemaker.create_transform_job(**job_request("no-input", model, "nothing/here/", "nothing/out"))
    with pytest.raises(ClientError) as duplicate:
        sagemaker.create_transform_job(**job_request("no-input", model, "nothing/here/", "nothing/out"))
    assert duplicate.value.response["Error"]["Code"] == "ResourceInUse"
    described = wait_for(sagemaker, "no-input")
    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"].startswith(
        f'ClientError: No S3 objects found under S3 URL "s3://{BUCKET}/nothing/here/"')
    with pytest.raises(ClientError) as unknown:
        sagemaker.stop_transform_job(TransformJobName="never-made")
    assert unknown.value.response["Error"]["Message"] == (
        "Could not find transform job 'arn:aws:sagemaker:us-east-1:123456789012:transform-job/never-made'.")


def test_a_model_that_cannot_load_fails_the_job(session, clients, tmp_path):
    s3, sagemaker = clients
    # model_fn reads SLEEP_S as a number: this one raises at load.
    broken = create_model(s3, sagemaker, tmp_path, "transform-broken", {"SLEEP_S": "not-a-number"})
    put_lines(s3, "unloadable/in/one.jsonl", [{"text": "a"}])
    sagemaker.create_transform_job(**job_request("broken-model", broken, "unloadable/in/", "unloadable/out"))
    described = wait_for(sagemaker, "broken-model")
    assert described["TransformJobStatus"] == "Failed"
    assert "could not convert string to float: 'not-a-number'" in described["FailureReason"]
    _no_process_left(session, "broken-model")

    s3.put_object(Bucket=BUCKET, Key="models/garbage/model.tar.gz", Body=b"not a tar archive")
    sagemaker.create_model(ModelName="transform-garbage", ExecutionRoleArn="arn:aws:iam::123456789012:role/R",
                           PrimaryContainer={"Image": "x", "ModelDataUrl": f"s3://{BUCKET}/models/garbage/model.tar.gz"})
    sagemaker.create_transform_job(**job_request("garbage-model", "transform-garbage", "unloadable/in/",
                                                 "unloadable/out"))
    described = wait_for(sagemaker, "garbage-model")
    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("ClientError: the model data of model 'transform-garbage'")


def test_a_failing_record_fails_the_job_naming_file_and_record(session, clients, model):
    s3, sagemaker = clients
    put_lines(s3, "rigged/in/fine.jsonl", [{"text": "a"}])
    put_lines(s3, "rigged/in/rigged.jsonl", [{"text": "a"}, {"text": "b"}, {"text": "boom"}, {"text": "d"}])
    sagemaker.create_transform_job(**job_request("rigged", model, "rigged/in/", "rigged/out",
                                                 BatchStrategy="SingleRecord",
                                                 ModelClientConfig={"InvocationsMaxRetries": 0}))
    described = wait_for(sagemaker, "rigged")
    assert described["TransformJobStatus"] == "Failed"
    reason = described["FailureReason"]
    assert f"record 3 of s3://{BUCKET}/rigged/in/rigged.jsonl" in reason, reason
    assert "this record is rigged to fail" in reason
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="rigged/out/rigged"), "a failed file is written"
    _no_process_left(session, "rigged")


def test_a_record_over_max_payload_fails_the_job(session, clients, model):
    s3, sagemaker = clients
    put_lines(s3, "big/in/big.jsonl", [{"text": "a"}, {"text": "x" * (1024 * 1024 + 10)}])
    sagemaker.create_transform_job(**job_request("too-big", model, "big/in/", "big/out", MaxPayloadInMB=1))
    described = wait_for(sagemaker, "too-big")
    assert described["TransformJobStatus"] == "Failed"
    assert "Too much data for max payload size: record 2" in described["FailureReason"]
    assert f"s3://{BUCKET}/big/in/big.jsonl" in described["FailureReason"]


@pytest.fixture(scope="module")
def parallel_model(clients: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    """Four single-threaded worker processes per instance: up to four records are answered at once."""
    s3, sagemaker = clients
    return create_model(s3, sagemaker, tmp_path_factory.mktemp("parallel"), "transform-parallel",
                        {"SLEEP_S": "0.5", "SAGEMAKER_MODEL_SERVER_WORKERS": "4", "LOCALMAKER_SERVER_THREADS": "1"})


def _most_at_once(answers: list[dict[str, Any]]) -> int:
    """The most records being answered at one moment (some record's start)."""
    return max(sum(1 for b in answers if b["started"] <= a["started"] < b["ended"]) for a in answers)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_max_concurrent_transforms_requests_are_in_flight_per_instance(clients, parallel_model, concurrency):
    s3, sagemaker = clients
    name = f"concurrency-{concurrency}"
    put_lines(s3, f"{name}/in/slow.jsonl", [{"text": "c" * i} for i in range(8)])
    sagemaker.create_transform_job(**job_request(name, parallel_model, f"{name}/in/", f"{name}/out",
                                                 BatchStrategy="SingleRecord", MaxConcurrentTransforms=concurrency))
    assert wait_for(sagemaker, name)["TransformJobStatus"] == "Completed"
    answers = read_lines(s3, f"{name}/out/slow.jsonl.out")
    assert [a["length"] for a in answers] == list(range(8))  # in record order, however they were answered
    # The instance could answer four at once, so no more than MaxConcurrentTransforms proves the limit; gunicorn
    # may hand two connections to one worker, so more than one (not exactly three) proves the parallelism.
    most = _most_at_once(answers)
    assert most == 1 if concurrency == 1 else 1 < most <= concurrency, most


def test_stop_transform_job_stops_its_instances(session, clients, slow_model):
    s3, sagemaker = clients
    put_lines(s3, "stop/in/slow.jsonl", [{"text": str(i)} for i in range(60)])
    sagemaker.create_transform_job(**job_request("stopped", slow_model, "stop/in/", "stop/out",
                                                 BatchStrategy="SingleRecord"))
    _wait_for_records(session, "stopped", 1)
    sagemaker.stop_transform_job(TransformJobName="stopped")
    assert sagemaker.describe_transform_job(TransformJobName="stopped")["TransformJobStatus"] in ("Stopping",
                                                                                                  "Stopped")
    described = wait_for(sagemaker, "stopped")
    assert described["TransformJobStatus"] == "Stopped" and "FailureReason" not in described
    _no_process_left(session, "stopped")
    sagemaker.stop_transform_job(TransformJobName="stopped")  # stopping an ended job changes nothing
    assert sagemaker.describe_transform_job(TransformJobName="stopped")["TransformJobStatus"] == "Stopped"


def test_an_instance_killed_mid_job_fails_it_clearly(session, clients, slow_model):
    s3, sagemaker = clients
    put_lines(s3, "killed/in/slow.jsonl", [{"text": str(i)} for i in range(60)])
    sagemaker.create_transform_job(**job_request("killed", slow_model, "killed/in/", "killed/out",
                                                 BatchStrategy="SingleRecord"))
    view = _wait_for_records(session, "killed", 1)
    started = time.monotonic()
    os.killpg(view["Instances"][0]["Pid"], signal.SIGKILL)
    described = wait_for(sagemaker, "killed")
    assert time.monotonic() - started < 30, "the job hung on its dead instance"
    assert described["TransformJobStatus"] == "Failed"
    assert "exited (code -9) while transforming record" in described["FailureReason"]
    assert f"s3://{BUCKET}/killed/in/slow.jsonl" in described["FailureReason"]
    _no_process_left(session, "killed")


def test_a_worker_killed_mid_job_is_retried_and_the_job_completes(session, clients, slow_model):
    """gunicorn replaces a dead worker; InvocationsMaxRetries (default 3) resends the record it held."""
    s3, sagemaker = clients
    put_lines(s3, "worker/in/slow.jsonl", [{"text": "t" * i} for i in range(12)])
    sagemaker.create_transform_job(**job_request("worker-killed", slow_model, "worker/in/", "worker/out",
                                                 BatchStrategy="SingleRecord"))
    master = _wait_for_records(session, "worker-killed", 2)["Instances"][0]["Pid"]
    workers = [pid for pid in group_members(master) if pid != master]
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    described = wait_for(sagemaker, "worker-killed")
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    answers = read_lines(s3, "worker/out/slow.jsonl.out")
    assert [a["length"] for a in answers] == list(range(12))  # every record, once, in order
    assert {a["pid"] for a in answers} - set(workers), "no replacement worker answered"
    _no_process_left(session, "worker-killed")


def test_a_control_plane_that_stops_mid_job_leaves_no_instance(tmp_path, localmaker_home):
    with Session(work_root=tmp_path / "control-plane") as own:
        s3, sagemaker = _client(own, "s3"), _client(own, "sagemaker")
        model = create_model(s3, sagemaker, tmp_path, "transform-shutdown", {"SLEEP_S": "0.5"})
        put_lines(s3, "shutdown/in/slow.jsonl", [{"text": str(i)} for i in range(60)])
        request = job_request("shutdown", model, "shutdown/in/", "shutdown/out", BatchStrategy="SingleRecord")
        request["TransformResources"]["InstanceCount"] = 2
        sagemaker.create_transform_job(**request)
        pids = [i["Pid"] for i in _wait_for_records(own, "shutdown", 1)["Instances"]]
        assert len(pids) == 2 and all(group_members(pid) for pid in pids)
    assert not any(group_members(pid) for pid in pids), "transform instances outlived their control plane"


def _wait_for_records(session: Session, name: str, records: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        view = local_job(str(session.endpoint_url), name)
        if view["Progress"]["RecordsDone"] >= records:
            return view
        assert view["TransformJobStatus"] == "InProgress", view
        time.sleep(0.1)
    raise AssertionError(f"{name} transformed no record in 120 s")
