"""The examples file: one JSON object per line, each a request and what the endpoint must answer.

    {"name": "two texts", "body": {"inputs": ["a", "b"]}, "content_type": "application/json",
     "accept": "application/json", "expect_status": 200, "expect_json": {"dimensions": 4}, "tolerance": 1e-4}

The examples also declare what the endpoint serves: the Content-Type and Accept pairs of the examples that
expect a 2xx are the types the contract test holds the endpoint to. Mistakes are refused before anything is
deployed, each naming its line, so a typo such as ``"expect_staus"`` cannot silently test nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localmaker.contract.instance_client import ProbeRequest
from localmaker.errors import ConfigurationError

JSON = "application/json"
FIELDS = ("name", "body", "body_base64", "content_type", "accept", "expect_status", "expect_json", "tolerance")
_ABSENT = object()


class ExamplesError(ConfigurationError):
    """The examples file cannot be used; the message names the line and the fix."""


@dataclass(frozen=True)
class ExampleCase:
    name: str
    body: bytes
    content_type: str = JSON
    accept: str = JSON
    expect_status: int = 200
    expect_json: Any = field(default=_ABSENT, repr=False)
    tolerance: float = 0.0
    line: int = 0

    @property
    def expects_success(self) -> bool:
        return 200 <= self.expect_status < 300

    @property
    def checks_json(self) -> bool:
        return self.expect_json is not _ABSENT

    def request(self) -> ProbeRequest:
        return ProbeRequest(self.body, self.content_type, self.accept)


# Without an examples file, one request that both built-in handlers answer stands for the declaration.
DEFAULT_CASES = (ExampleCase(name="smoke", body=json.dumps({"inputs": "contract test"}).encode()),)


def is_json_type(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == JSON or kind.endswith("+json")


def _body(record: dict[str, Any], content_type: str, where: str) -> bytes:
    has_body, has_base64 = "body" in record, "body_base64" in record
    if has_body == has_base64:
        raise ExamplesError(f'{where}: give exactly one of "body" (JSON or text) and "body_base64" (binary)')
    if has_base64:
        encoded = record["body_base64"]
        if not isinstance(encoded, str):
            raise ExamplesError(f'{where}: "body_base64" must be a base64 string')
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ExamplesError(f'{where}: "body_base64" is not valid base64 ({exc})') from None
    body = record["body"]
    if is_json_type(content_type):
        return json.dumps(body).encode("utf-8")
    if not isinstance(body, str):
        raise ExamplesError(f'{where}: "body" for Content-Type {content_type} must be a string (sent as UTF-8); '
                            'use "body_base64" for binary bodies')
    return body.encode("utf-8")


def _text(record: dict[str, Any], key: str, default: str, where: str) -> str:
    value = record.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ExamplesError(f'{where}: "{key}" must be a non-empty string, e.g. "application/json"')
    return value


def _case(record: Any, number: int, source: str) -> ExampleCase:
    where = f"{source} line {number}"
    if not isinstance(record, dict):
        raise ExamplesError(f"{where}: each line must be a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise ExamplesError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
                            f"allowed fields are {', '.join(FIELDS)}")
    name = _text(record, "name", f"line {number}", where)
    content_type = _text(record, "content_type", JSON, where)
    status = record.get("expect_status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ExamplesError(f'{where}: "expect_status" must be an HTTP status from 100 to 599, got {status!r}')
    tolerance = record.get("tolerance", 0.0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise ExamplesError(f'{where}: "tolerance" must be a number of at least 0, got {tolerance!r}')
    if "tolerance" in record and "expect_json" not in record:
        raise ExamplesError(f'{where}: "tolerance" applies to the numbers of "expect_json", which is missing')
    return ExampleCase(name=name, body=_body(record, content_type, where), content_type=content_type,
                       accept=_text(record, "accept", JSON, where), expect_status=status,
                       expect_json=record.get("expect_json", _ABSENT), tolerance=float(tolerance), line=number)


def parse_examples(text: str, source: str = "examples") -> list[ExampleCase]:
    """Every non-blank line as an ExampleCase; ``source`` names the file in error messages."""
    cases: list[ExampleCase] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ExamplesError(f"{source} line {number} is not JSON ({exc}): write one JSON object per line") \
                from None
        case = _case(record, number, source)
        clash = next((c for c in cases if c.name == case.name), None)
        if clash is not None:
            raise ExamplesError(f"{source} line {number}: the name {case.name!r} is already used on line "
                                f"{clash.line}; give each example its own name (it names the check)")
        cases.append(case)
    if not cases:
        raise ExamplesError(f"{source} holds no examples: write one JSON object per line")
    if not any(case.expects_success for case in cases):
        raise ExamplesError(f"{source}: no example expects a 2xx status; declare at least one request the "
                            "endpoint answers, since the other checks are built from it")
    return cases


def load_examples(path: Path) -> list[ExampleCase]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExamplesError(f"examples file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ExamplesError(f"examples file {path} is not UTF-8 ({exc})") from None
    return parse_examples(text, str(path))
