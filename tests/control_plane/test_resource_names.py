"""Names are judged by botocore's model, in AWS's words; paths built from names never leave their root."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from localmaker.control_plane.answer_shapes import service_model
from localmaker.control_plane.api_errors import SerializationException, ValidationException
from localmaker.control_plane.name_locks import NameLocks
from localmaker.control_plane.resource_names import (
    NAME_SHAPES,
    UnsafePath,
    check_names,
    discard_tree,
    path_under,
)

ENDPOINT_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"


@pytest.mark.parametrize("hostile", [
    "../x", "a/b", "..", ".", "/etc", "", "x" * 64, "ｅndpoint",  # a fullwidth "e"
    "end\u200bpoint", "ok\n", "-lead", "trail-", "under_score", "dot.ted", "spa ce", "\\\\server\\share",
])
def test_hostile_endpoint_names_are_refused_in_aws_words(hostile: str) -> None:
    with pytest.raises(ValidationException) as caught:
        check_names("CreateEndpoint", {"EndpointName": hostile, "EndpointConfigName": "fine"})
    message = caught.value.message
    assert message.startswith(("1 validation error detected: ", "2 validation errors detected: "))
    assert f"Value '{hostile}' at 'endpointName' failed to satisfy constraint: Member must" in message
    if len(hostile) > 63:
        assert "Member must have length less than or equal to 63" in message
    else:
        assert f"Member must satisfy regular expression pattern: {ENDPOINT_PATTERN}" in message


@pytest.mark.parametrize("odd_but_valid", ["a", "0", "a" * 63, "a--b", "A-1", "x---y---z"])
def test_names_aws_accepts_pass(odd_but_valid: str) -> None:
    check_names("CreateEndpoint", {"EndpointName": odd_but_valid, "EndpointConfigName": odd_but_valid})


def test_nested_names_are_located_as_aws_locates_them() -> None:
    with pytest.raises(ValidationException) as caught:
        check_names("CreateEndpointConfig", {"EndpointConfigName": "c", "ProductionVariants": [
            {"VariantName": "fine", "ModelName": "m"}, {"VariantName": "../up", "ModelName": "m/../n"}]})
    assert caught.value.message.startswith("2 validation errors detected: Value '../up' at "
                                           "'productionVariants.2.member.variantName' failed to satisfy constraint")
    assert "Value 'm/../n' at 'productionVariants.2.member.modelName'" in caught.value.message


def test_the_rules_come_from_the_service_model() -> None:
    """A shape's max and pattern as botocore has them, not a copy: a 64-char ChannelName is one too many."""
    channel = service_model().shape_for("ChannelName").metadata
    check_names("CreateTrainingJob", {"TrainingJobName": "j", "InputDataConfig": [
        {"ChannelName": "a" * channel["max"]}]})
    with pytest.raises(ValidationException, match=f"length less than or equal to {channel['max']}"):
        check_names("CreateTrainingJob", {"TrainingJobName": "j", "InputDataConfig": [
            {"ChannelName": "a" * (channel["max"] + 1)}]})
    for shape in NAME_SHAPES:
        assert "pattern" in service_model().shape_for(shape).metadata, shape


@pytest.mark.parametrize("channel", [".", ".."])
def test_channel_names_that_match_the_pattern_but_name_no_folder_are_refused(channel: str) -> None:
    with pytest.raises(ValidationException, match="names no folder of its own"):
        check_names("CreateTrainingJob", {"TrainingJobName": "j", "InputDataConfig": [{"ChannelName": channel}]})


def test_a_name_that_is_not_a_string_is_a_serialization_error() -> None:
    with pytest.raises(SerializationException):
        check_names("CreateTransformJob", {"TransformJobName": ["../x"], "ModelName": "m"})


def test_operations_without_names_and_unknown_operations_pass() -> None:
    check_names("ListEndpoints", {"NameContains": "../"})
    check_names("NoSuchOperation", {"EndpointName": "../x"})


@pytest.mark.parametrize("parts", [("..",), ("/etc",), ("a", "..", ".."), ("a/../../x",), ("",), (".",)])
def test_path_under_refuses_whatever_leaves_or_is_the_root(tmp_path: Path, parts: tuple[str, ...]) -> None:
    with pytest.raises(UnsafePath):
        path_under(tmp_path / "root", *parts)


def test_path_under_follows_symlinks_before_judging(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePath):
        path_under(root, "link", "outside")
    assert path_under(root, "a", "b") == root / "a" / "b"


def test_discard_tree_deletes_only_inside_its_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "precious"
    (root / "models").mkdir(parents=True)
    outside.mkdir()
    (outside / "keep").write_text("mine")
    discard_tree(root, root / "models" / ".." / ".." / "precious")
    discard_tree(root, root)
    assert (outside / "keep").read_text() == "mine" and root.is_dir()
    discard_tree(root, root / "models")
    assert not (root / "models").exists()


def test_name_locks_serialize_one_name_and_forget_it_after() -> None:
    locks, inside, most = NameLocks(), [0], [0]

    def hold() -> None:
        with locks.held("same"):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            time.sleep(0.01)
            inside[0] -= 1

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    assert len(locks) == 0
