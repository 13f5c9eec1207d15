"""Session.local_endpoint()'s typed view reads the control plane's JSON, and still indexes like it."""

from __future__ import annotations

from pathlib import Path

import pytest

from localmaker.deploy.endpoint_view import EndpointView

RECORD = {
    "EndpointName": "e", "EndpointStatus": "InService", "EndpointConfigName": "c", "FailureReason": "",
    "Variants": [
        {"VariantName": "A", "InstanceType": "ml.m5.large", "Instances": [
            {"InstanceId": "i-1", "Url": "http://127.0.0.1:1", "Pid": 11, "LogFile": "/w/1.log", "Device": "cpu"},
            {"InstanceId": "i-2", "Url": "http://127.0.0.1:2", "Pid": 12, "LogFile": "/w/2.log", "Device": "cpu"}]},
        {"VariantName": "B", "InstanceType": "ml.g5.xlarge", "Instances": [
            {"InstanceId": "i-3", "Url": "http://127.0.0.1:3", "Pid": 13, "LogFile": "/w/3.log", "Device": "cuda:0"}]},
    ],
    "RetiredInstances": [{"InstanceId": "i-0", "Url": "http://127.0.0.1:9", "Pid": 10, "LogFile": "/w/0.log"}],
}


def test_instances_come_variant_by_variant():
    view = EndpointView(RECORD)
    assert view.instance_urls == ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"]
    assert [i.pid for i in view.instances] == [11, 12, 13]
    assert view.variant("B").instances[0].device == "cuda:0"
    assert view.instances[0].log_file == Path("/w/1.log")


def test_retired_instances_have_no_device():
    (retired,) = EndpointView(RECORD).retired
    assert (retired.instance_id, retired.device) == ("i-0", None)


def test_an_unknown_variant_names_the_ones_there_are():
    with pytest.raises(KeyError, match="has no variant 'C'; it has A, B"):
        EndpointView(RECORD).variant("C")


def test_the_view_still_reads_as_the_json_it_came_from():
    view = EndpointView(RECORD)
    assert dict(view) == RECORD and view["Variants"][1]["VariantName"] == "B"
