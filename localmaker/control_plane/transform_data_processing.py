"""A transform job's ``DataProcessing``: InputFilter, JoinSource and OutputFilter, as batch transform applies them.

AWS's contract ("Associate Prediction Results with Input Records"): the filters are JSONPath expressions
over a record. A JSON record (``application/json``, ``application/jsonlines``) is the parsed JSON value; a
CSV record (``text/csv``) is its row read as a JSON array of columns. ``JoinSource: Input`` joins each
record's answer to the whole input record (before the InputFilter): a JSON object gets the answer under
``SageMakerOutput``; any other JSON value becomes ``{"SageMakerInput": …, "SageMakerOutput": …}``; a CSV
row gets the answer's columns appended. OutputFilter then selects from the joined record.

Only the operators of AWS's table are accepted (``$``, ``.name``, ``*``, ``['a','b']``, ``[0,-1]`` and
``[start:end]``), checked character by character as AWS checks them, with AWS's message; jsonpath-ng
parses and evaluates what passes. One AWS form jsonpath-ng's grammar lacks, a bracket mixing indexes and
slices (``$[0,5:]``), is evaluated as the union of one bracket per item, in order.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from jsonpath_ng import JSONPath, parse
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.jsonpath import Child, Fields, Index, Root, Slice, Wildcard

# AWS's own list, in its order, as its error message prints it; letters and digits are always allowed.
SUPPORTED_OPERATORS = ("$", "[", "]", "*", ".", " ", ",", ":", "-", "'")
JSON_TYPES = ("application/json", "application/jsonlines", "application/x-jsonlines", "application/jsonl")
CSV_TYPES = ("text/csv",)
MAX_FILTER_LENGTH = 63  # botocore's (and AWS's) bound on InputFilter and OutputFilter


class InvalidJsonPath(ValueError):
    """A filter AWS would refuse at CreateTransformJob; the message is AWS's."""


class RecordProcessingError(ValueError):
    """A record the filters cannot be applied to (not JSON, an index beyond the row); it fails the job."""


def data_format(content_type: str) -> str | None:
    """"json", "csv", or None for a content type DataProcessing cannot read."""
    base = content_type.split(";", 1)[0].strip().lower()
    if base in JSON_TYPES:
        return "json"
    if base in CSV_TYPES:
        return "csv"
    return None


@dataclass(frozen=True)
class JsonPathFilter:
    """One validated filter expression; ``select`` applies it to a record's value."""

    expression: str
    paths: tuple[JSONPath, ...]

    @property
    def selects_all(self) -> bool:
        return self.expression.strip() in ("", "$")

    @classmethod
    def compile(cls, expression: str, field: str, content_type: str) -> JsonPathFilter:
        """Parse ``expression`` (the request's ``field``), refusing what AWS refuses, in AWS's words."""
        if len(expression) > MAX_FILTER_LENGTH:
            raise InvalidJsonPath(f"1 validation error detected: Value '{expression}' at 'dataProcessing."
                                  f"{field[0].lower()}{field[1:]}' failed to satisfy constraint: Member must have "
                                  f"length less than or equal to {MAX_FILTER_LENGTH}")
        if expression.strip() in ("", "$"):
            return cls(expression, (parse("$"),))
        for character in expression:
            if not (character.isascii() and character.isalnum()) and character not in SUPPORTED_OPERATORS:
                raise _unsupported(field, expression, character, content_type)
        if not expression.startswith("$"):
            raise _unsupported(field, expression, expression[0], content_type)
        if ".." in expression:
            raise _unsupported(field, expression, "..", content_type)
        try:
            paths = tuple(parse(part) for part in _split_mixed_bracket(expression))
        except (JsonPathLexerError, JsonPathParserError, Exception) as exc:  # jsonpath-ng raises bare Exception too
            raise InvalidJsonPath(f'Invalid {field}: "{expression}". {exc}') from None
        for path in paths:
            _check_nodes(path, field, expression, content_type)
        return cls(expression, paths)

    def select(self, value: Any) -> Any:
        """The selected part of ``value``: one value for a single name or index, a list for indexes, a
        slice or a wildcard, an object for several bracketed names (``$['id','SageMakerOutput']``)."""
        if self.selects_all:
            return value
        if len(self.paths) > 1:
            return [item for path in self.paths for item in _values(path, value)]
        path = self.paths[0]
        last = path.right if isinstance(path, Child) else path
        matches = _values(path, value)
        if isinstance(last, Fields):
            if len(last.fields) > 1:
                found = {getattr(m.path, "fields", (None,))[0]: m.value for m in path.find(value)}
                return {name: found[name] for name in last.fields if name in found}
            if not matches:
                raise RecordProcessingError(f"{self.expression} selects nothing: the record has no "
                                            f"'{last.fields[0]}'")
            return matches[0]
        if isinstance(last, Index) and len(last.indices) == 1:
            return matches[0]
        return matches


def _values(path: JSONPath, value: Any) -> list[Any]:
    """Every match of ``path`` in ``value``; an index outside a row is an error, as AWS reports it."""
    last = path.right if isinstance(path, Child) else path
    if isinstance(last, Index):
        parents = [m.value for m in path.left.find(value)] if isinstance(path, Child) else [value]
        for parent in parents:
            if not isinstance(parent, list):
                raise RecordProcessingError(f"{path} indexes a value that is not an array (or CSV row)")
            for index in last.indices:
                if not -len(parent) <= index < len(parent):
                    raise RecordProcessingError(f"index {index} of {path} is not within the dimension size "
                                                f"({len(parent)}) of the record")
    return [match.value for match in path.find(value)]


def _split_mixed_bracket(expression: str) -> list[str]:
    """``$[0,5:]`` as ``$[0]`` and ``$[5:]``: jsonpath-ng cannot parse a union of index and slice."""
    head, bracket, tail = expression.rpartition("[")
    if not bracket or not tail.endswith("]") or ":" not in tail or "," not in tail or "'" in tail:
        return [expression]
    return [f"{head}[{item.strip()}]" for item in tail[:-1].split(",")]


_ALLOWED_NODES = (Root, Child, Fields, Index, Slice, Wildcard)


def _check_nodes(path: JSONPath, field: str, expression: str, content_type: str) -> None:
    stack = [path]
    while stack:
        node = stack.pop()
        if not isinstance(node, _ALLOWED_NODES):
            raise _unsupported(field, expression, type(node).__name__, content_type)
        if isinstance(node, Slice) and node.step is not None:
            raise _unsupported(field, expression, ":", content_type)
        if isinstance(node, Fields) and len(node.fields) > 1 and any("." in name for name in node.fields):
            # AWS: "additional nesting of children within brackets isn't supported".
            raise InvalidJsonPath(f'Invalid {field}: "{expression}". Nested children within brackets are not '
                                  "supported; select one level of children per bracket")
        if isinstance(node, Child):
            stack += [node.left, node.right]


def _unsupported(field: str, expression: str, found: str, content_type: str) -> InvalidJsonPath:
    operators = "[" + ", ".join(f"'{op}'" for op in SUPPORTED_OPERATORS) + "]"
    return InvalidJsonPath(f'Invalid {field}: "{expression}". Unexpected "{found}" in JsonPath. Supported '
                           f'operators for "{content_type}" are {operators}')


# -- applying the three steps to one record -----------------------------------------------------------


@dataclass(frozen=True)
class DataProcessing:
    """The job's three steps, compiled once; ``record_format`` is "json" or "csv" when any is not a no-op."""

    input_filter: JsonPathFilter
    output_filter: JsonPathFilter
    join_input: bool
    record_format: str | None
    output_format: str | None

    @classmethod
    def from_request(cls, config: dict[str, Any] | None, content_type: str, accept: str) -> DataProcessing:
        config = config or {}
        join = str(config.get("JoinSource") or "None")
        if join not in ("Input", "None"):
            raise InvalidJsonPath(f"1 validation error detected: Value '{join}' at 'dataProcessing.joinSource' "
                                  "failed to satisfy constraint: Member must satisfy enum value set: [Input, None]")
        shown_type = content_type or "application/octet-stream"
        input_filter = JsonPathFilter.compile(str(config.get("InputFilter") or "$"), "InputFilter", shown_type)
        output_filter = JsonPathFilter.compile(str(config.get("OutputFilter") or "$"), "OutputFilter",
                                               accept or shown_type)
        active = join == "Input" or not (input_filter.selects_all and output_filter.selects_all)
        record_format = data_format(content_type)
        if active and record_format is None:
            raise InvalidJsonPath(f"DataProcessing (InputFilter, JoinSource, OutputFilter) reads JSON and CSV input "
                                  f"only, and TransformInput.ContentType is {content_type or 'unset'!r}: set it to "
                                  f"application/json, application/jsonlines or text/csv")
        return cls(input_filter, output_filter, join == "Input", record_format if active else None,
                   data_format(accept) or record_format)

    @property
    def active(self) -> bool:
        return self.record_format is not None

    def filter_input(self, record: bytes) -> bytes:
        if not self.active or self.input_filter.selects_all:
            return record
        return _encode(self.input_filter.select(_decode(record, self.record_format)), self.record_format)

    def finish(self, record: bytes, answer: bytes) -> bytes:
        """The line written for one record: its answer, joined to the input and filtered as asked."""
        if not self.active:
            return answer
        fmt = self.record_format
        output = _decode_answer(answer, self.output_format)
        if self.join_input:
            source = _decode(record, fmt)
            if fmt == "csv":
                joined: Any = source + (output if isinstance(output, list) else [output])
            elif isinstance(source, dict):
                joined = {**source, "SageMakerOutput": output}
            else:
                joined = {"SageMakerInput": source, "SageMakerOutput": output}
        else:
            joined = output
        return _encode(self.output_filter.select(joined), fmt if self.join_input else (self.output_format or fmt))


def _decode(record: bytes, fmt: str | None) -> Any:
    text = record.decode("utf-8").strip("\r\n")
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        return rows[0] if rows else []
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RecordProcessingError(f"the record is not JSON ({exc}); DataProcessing reads JSON records "
                                    "one per line with SplitType Line") from None


def _decode_answer(answer: bytes, fmt: str | None) -> Any:
    if fmt == "json":
        try:
            return json.loads(answer)
        except ValueError:
            return answer.decode("utf-8", "replace").strip()
    return _decode(answer, "csv")


def _encode(value: Any, fmt: str | None) -> bytes:
    if fmt == "csv":
        row = value if isinstance(value, list) else [value]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(
            [json.dumps(v, separators=(",", ":")) if isinstance(v, dict | list) else v for v in row])
        return buffer.getvalue().encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")
