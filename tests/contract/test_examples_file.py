"""The examples file: what a line turns into, and the mistakes refused before anything is deployed."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from localmaker.contract.examples import ExamplesError, load_examples, parse_examples
from localmaker.errors import ConfigurationError

CI_EXAMPLES = Path(__file__).parents[2] / "examples" / "ci" / "examples.jsonl"


def test_the_ci_examples_file_parses_with_its_defaults_filled_in():
    cases = load_examples(CI_EXAMPLES)
    assert [case.name for case in cases] == ["embed four dimensions", "embeddings as npy", "search one document",
                                            "empty inputs are refused"]
    first, npy, search, refused = cases
    assert json.loads(first.body) == {"inputs": ["Ronaldo Plays for portugal"], "parameters": {"dimensions": 4}}
    assert (first.content_type, first.accept, first.expect_status, first.tolerance) == (
        "application/json", "application/json", 200, 1e-4)
    assert first.checks_json and first.expects_success
    assert npy.accept == "application/x-npy" and not npy.checks_json
    assert search.expect_status == 200 and search.tolerance == 0.0  # the defaults
    assert refused.expect_status == 400 and not refused.expects_success
    assert [case.line for case in cases] == [1, 2, 3, 4]


def test_binary_and_text_bodies():
    png_start = b"\x89PNG\r\n\x1a\n"
    text = "\n".join([
        json.dumps({"name": "binary", "body_base64": base64.b64encode(png_start).decode(),
                    "content_type": "application/octet-stream"}),
        "",  # blank lines are allowed
        json.dumps({"name": "csv", "body": "1,2\n3,4", "content_type": "text/csv", "accept": "text/csv"}),
        json.dumps({"name": "null is JSON too", "body": None, "expect_status": 400, "expect_json": None}),
    ])
    binary, csv, null = parse_examples(text, "cases.jsonl")
    assert binary.body == png_start
    assert csv.body == b"1,2\n3,4" and csv.line == 3
    assert null.body == b"null" and null.checks_json and null.expect_json is None


GOOD = json.dumps({"name": "ok", "body": {"inputs": "x"}})


@pytest.mark.parametrize(("lines", "fragment"), [
    ([GOOD, "{not json"], "cases.jsonl line 2 is not JSON"),
    ([GOOD, '["a", "list"]'], "line 2: each line must be a JSON object"),
    ([json.dumps({"body": {}, "expect_staus": 200})], "line 1: unknown field(s) 'expect_staus'"),
    ([json.dumps({"name": "both", "body": {}, "body_base64": "AA=="})], 'line 1: give exactly one of "body"'),
    ([json.dumps({"name": "neither"})], 'line 1: give exactly one of "body"'),
    ([json.dumps({"body_base64": "not base64!"})], 'line 1: "body_base64" is not valid base64'),
    ([json.dumps({"body": [1, 2], "content_type": "text/csv"})], 'line 1: "body" for Content-Type text/csv must be'),
    ([json.dumps({"body": {}, "expect_status": 700})], 'line 1: "expect_status" must be an HTTP status'),
    ([json.dumps({"body": {}, "expect_status": True})], 'line 1: "expect_status" must be an HTTP status'),
    ([json.dumps({"body": {}, "expect_json": {}, "tolerance": -1})], 'line 1: "tolerance" must be a number'),
    ([json.dumps({"body": {}, "tolerance": 0.1})], 'line 1: "tolerance" applies to the numbers of "expect_json"'),
    ([json.dumps({"body": {}, "accept": ""})], 'line 1: "accept" must be a non-empty string'),
    ([GOOD, GOOD], "line 2: the name 'ok' is already used on line 1"),
    ([json.dumps({"body": {}, "expect_status": 400})], "no example expects a 2xx status"),
    (["", "  "], "cases.jsonl holds no examples"),
])
def test_mistakes_are_refused_naming_the_line(lines, fragment):
    with pytest.raises(ExamplesError) as caught:
        parse_examples("\n".join(lines), "cases.jsonl")
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ConfigurationError)  # the CLI reports it and exits 1


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ExamplesError, match="does not exist"):
        load_examples(tmp_path / "nope.jsonl")


def test_the_cli_refuses_a_bad_examples_file_before_deploying_anything(tmp_path):
    examples = tmp_path / "cases.jsonl"
    examples.write_text(GOOD + "\n" + json.dumps({"body": {}, "expect_staus": 200}) + "\n")
    done = subprocess.run([sys.executable, "-m", "localmaker.cli", "contract-test", "no-such-model",
                           "--examples", str(examples)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("localmaker: error:")
    assert f"{examples} line 2: unknown field(s) 'expect_staus'" in done.stderr
    assert "Creating endpoint" not in done.stdout
