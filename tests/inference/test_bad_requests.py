"""Every malformed request is a 4xx whose message names the field and says how to fix it."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from tests.inference.handler_loader import invoke, sibling

errors = sibling("serving_errors")


def _error_of(handler: ModuleType, service: Any, body: Any, **kwargs: str) -> Any:
    with pytest.raises(errors.InferenceError) as info:
        invoke(handler, service, body, **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'["a list"]', "JSON object"),
        (b'"just a string"', "JSON object"),
        ({}, '"inputs"'),
        ({"inputs": []}, '"inputs"'),
        ({"inputs": ""}, '"inputs"'),
        ({"inputs": "   "}, '"inputs"'),
        ({"inputs": ["ok", ""]}, '"inputs[1]"'),
        ({"inputs": ["ok", 3]}, '"inputs[1]"'),
        ({"inputs": 3}, '"inputs"'),
        ({"inputs": None}, '"inputs"'),
        ({"inputs": "x", "extra": 1}, "'extra'"),
        ({"inputs": "x", "parameters": []}, '"parameters"'),
        ({"inputs": "x", "parameters": {"dimension": 8}}, "'dimension'"),
        ({"inputs": "x", "parameters": {"dimensions": "8"}}, '"parameters.dimensions"'),
        ({"inputs": "x", "parameters": {"dimensions": 0}}, '"parameters.dimensions"'),
        ({"inputs": "x", "parameters": {"dimensions": True}}, '"parameters.dimensions"'),
        ({"inputs": "x", "parameters": {"dimensions": 385}}, "1 to 384"),
        ({"inputs": "x", "parameters": {"normalize": "yes"}}, '"parameters.normalize"'),
        ({"inputs": "x", "parameters": {"prompt_name": 1}}, '"parameters.prompt_name"'),
        ({"inputs": "x", "parameters": {"prompt_name": "query"}}, "available: none"),
        ({"query": ""}, '"query"'),
        ({"query": 5, "documents": ["a"]}, '"query"'),
        ({"query": "q", "documents": []}, '"documents"'),
        ({"query": "q", "documents": "a"}, '"documents"'),
        ({"query": "q", "documents": ["a", None]}, '"documents[1]"'),
        ({"query": "q", "documents": ["a"], "top_k": 0}, '"top_k"'),
        ({"query": "q", "documents": ["a"], "top_k": 1.5}, '"top_k"'),
        ({"query": "q", "documents": ["a"], "inputs": "x"}, "'inputs'"),
        ({"query": "q", "documents": ["a"], "parameters": {"normalize": False}}, '"parameters.normalize"'),
        ({"query": "q"}, '"documents" is missing'),
    ],
)
def test_bad_bodies_are_400_naming_the_field(handler: ModuleType, minilm_service: Any, body: Any, named: str) -> None:
    err = _error_of(handler, minilm_service, body)
    assert isinstance(err, errors.InvalidInput)
    assert err.status_code == 400
    assert named in err.message, err.message
    # and says how to fix it
    assert any(word in err.message for word in ("send", "use", "allowed", "remove", "Remove", "encode", "omit"))


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-npy", "application/jsonlines"])
def test_unsupported_content_type_is_415(handler: ModuleType, minilm_service: Any, content_type: str) -> None:
    err = _error_of(handler, minilm_service, {"inputs": "x"}, content_type=content_type)
    assert isinstance(err, errors.UnsupportedContentType)
    assert err.status_code == 415
    assert "application/json" in err.message and content_type in err.message


@pytest.mark.parametrize("accept", ["text/csv", "image/png"])
def test_unsupported_accept_is_406(handler: ModuleType, minilm_service: Any, accept: str) -> None:
    err = _error_of(handler, minilm_service, {"inputs": "x"}, accept=accept)
    assert isinstance(err, errors.UnsupportedAccept)
    assert err.status_code == 406
    assert "application/json" in err.message and "application/x-npy" in err.message


def test_npy_is_not_offered_for_search_results(handler: ModuleType, minilm_service: Any) -> None:
    body = {"query": "q", "documents": ["a"]}
    err = _error_of(handler, minilm_service, body, accept="application/x-npy")
    assert err.status_code == 406 and "application/json" in err.message


def test_str_bodies_are_accepted_like_bytes(handler: ModuleType, minilm_service: Any) -> None:
    raw, _ = invoke(handler, minilm_service, json.dumps({"inputs": "hé"}))
    assert len(json.loads(raw)["embeddings"]) == 1
