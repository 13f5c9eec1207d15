"""Routing within an endpoint: healthy instances only, round robin, target variants and weights."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from localmaker.control_plane.endpoint_state import (
    NoInstanceInService,
    RunningEndpoint,
    ServingInstance,
    Variant,
    VariantSpec,
)
from localmaker.control_plane.instance_process import InstanceProcess


def _variant(name: str, count: int, weight: float = 1.0) -> Variant:
    spec = VariantSpec(variant_name=name, model_name="m", instance_type="ml.m5.large", instance_count=count,
                       model_data_url="s3://b/k", image="pytorch-inference", environment={}, weight=weight)
    variant = Variant(spec=spec, model_dir=Path("."), weight=weight, desired_count=count)
    for index in range(count):
        process = InstanceProcess(f"{name}-{index}", Path("."), Path(f"{name}-{index}.log"), {}, port=10_000 + index)
        variant.instances.append(ServingInstance(process=process, device="cpu", in_rotation=True))
    return variant


def test_round_robin_skips_instances_out_of_rotation():
    endpoint = RunningEndpoint("e", Path("."), "c", variants=[_variant("A", 3)])
    first = endpoint.variants[0].instances[0]
    picks = Counter(endpoint.route()[1].process.instance_id for _ in range(9))
    assert picks == {"A-0": 3, "A-1": 3, "A-2": 3}

    endpoint.take_out_of_rotation(first)
    picks = Counter(endpoint.route()[1].process.instance_id for _ in range(8))
    assert picks == {"A-1": 4, "A-2": 4}
    assert [i["InstanceId"] for i in endpoint.describe()["Variants"][0]["Instances"]] == ["A-1", "A-2"]
    assert endpoint.production_variants()[0]["CurrentInstanceCount"] == 2
    assert endpoint.production_variants()[0]["DesiredInstanceCount"] == 3


def test_target_variant_weights_and_an_empty_rotation():
    endpoint = RunningEndpoint("e", Path("."), "c", variants=[_variant("A", 1, weight=1.0), _variant("B", 1, weight=0)])
    assert {endpoint.route()[0].spec.variant_name for _ in range(50)} == {"A"}  # weight 0 takes no traffic
    assert endpoint.route("B")[0].spec.variant_name == "B"  # unless it is named
    with pytest.raises(KeyError):
        endpoint.route("C")
    for variant in endpoint.variants:
        endpoint.take_out_of_rotation(variant.instances[0])
    with pytest.raises(NoInstanceInService):
        endpoint.route()


def test_instance_ids_never_repeat_and_look_like_ec2_ids():
    endpoint, other = RunningEndpoint("e", Path("."), "c"), RunningEndpoint("f", Path("."), "c")
    ids = [endpoint.next_instance_id("AllTraffic") for _ in range(300)] + [other.next_instance_id("AllTraffic")]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"i-[0-9a-f]{17}", i) for i in ids), ids[:3]


def test_an_instance_swapped_out_or_taken_out_no_longer_serves():
    blue = _variant("A", 2)
    endpoint = RunningEndpoint("e", Path("."), "c", variants=[blue])
    first, second = blue.instances
    assert endpoint.serves_from(first) and endpoint.serves_from(second)
    endpoint.take_out_of_rotation(first)
    assert not endpoint.serves_from(first) and endpoint.serves_from(second)
    endpoint.variants = [_variant("A", 1)]  # a blue/green swap: the old fleet is gone, flags and all
    assert not endpoint.serves_from(second)
