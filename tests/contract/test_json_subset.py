"""expect_json matching: objects as subsets, lists item by item, numbers within the tolerance."""

from __future__ import annotations

import pytest

from localmaker.contract.json_subset import json_mismatch

ANSWER = {"embeddings": [[0.25, -0.5]], "dimensions": 2, "usage": {"tokens": 3}, "ok": True, "id": None}


@pytest.mark.parametrize(("expected", "tolerance"), [
    ({}, 0.0),
    ({"dimensions": 2}, 0.0),
    ({"dimensions": 2.0}, 0.0),  # JSON has one number type
    ({"embeddings": [[0.2501, -0.4999]]}, 1e-3),
    ({"usage": {"tokens": 3}, "ok": True, "id": None}, 0.0),
    (ANSWER, 0.0),
])
def test_matches(expected, tolerance):
    assert json_mismatch(expected, ANSWER, tolerance) is None


@pytest.mark.parametrize(("expected", "tolerance", "message"), [
    ({"embeddings": [[0.26, -0.5]]}, 1e-3, "$.embeddings[0][0]: expected 0.26 ± 0.001, got 0.25"),
    ({"embeddings": [[0.25, -0.5, 1.0]]}, 0.0, "$.embeddings[0]: expected 3 item(s), got 2"),
    ({"embeddings": [[0.25]]}, 0.0, "$.embeddings[0]: expected 1 item(s), got 2"),
    ({"usage": {"characters": 3}}, 0.0, "$.usage.characters: missing (the answer has 'tokens')"),
    ({"usage": []}, 0.0, "$.usage: expected a list, got an object"),
    ({"dimensions": "2"}, 0.0, "$.dimensions: expected '2', got 2"),
    ({"ok": 1}, 0.0, "$.ok: expected a number, got a boolean True"),  # true is not 1
    ({"dimensions": True}, 0.0, "$.dimensions: expected True, got 2"),
    ({"id": 0}, 0.0, "$.id: expected a number, got null None"),
])
def test_mismatches_name_the_path(expected, tolerance, message):
    assert json_mismatch(expected, ANSWER, tolerance) == message


def test_keys_that_are_not_identifiers_are_quoted():
    assert json_mismatch({"a b": 1}, {"a b": 2}) == "$['a b']: expected 1, got 2"
    assert json_mismatch([{"x": 1}], {"x": 1}) == "$: expected a list, got an object"
