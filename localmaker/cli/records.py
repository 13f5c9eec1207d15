"""``--json`` output: what a command prints for a person, as one JSON document (or JSON Lines) for a script.

boto3 answers hold datetimes and its own ResponseMetadata; the first cannot be serialized and the second
describes the HTTP exchange, not the record, so both are dealt with here, once.
"""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Mapping
from typing import Any


def add_json_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as JSON on stdout, and nothing else there (for scripts and jq)")


def aws_record(answer: Mapping[str, Any]) -> dict[str, Any]:
    """A boto3 answer without its ResponseMetadata."""
    return {key: value for key, value in answer.items() if key != "ResponseMetadata"}


def _encode(value: object) -> str:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_text(record: object, indent: int | None = 2) -> str:
    return json.dumps(record, indent=indent, default=_encode, ensure_ascii=False)


def print_json(record: object) -> None:
    print(json_text(record))


def print_json_line(record: object) -> None:
    print(json_text(record, indent=None), flush=True)
