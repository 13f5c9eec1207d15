"""The shape of embedding and search requests, checked strictly before any model work.

A typo such as ``"top-k"`` or ``"dimension"`` silently ignored would return plausible but wrong
results, so unknown keys are errors. Every error names the field and says what is allowed. Checks that
need the model (the dimension limit, the prompt names) happen where the model is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from request_checks import as_int, check_keys, check_text, type_name
from serving_errors import InvalidInput

DEFAULT_TOP_K = 5
# Texts per request. Every text is tokenized and its vector held until the answer is written, so without a
# bound one 6 MB body of short strings (about 1.5 million texts) costs gigabytes and outlasts the timeout.
MAX_TEXTS = 2048
EMBED_KEYS = ("inputs", "parameters")
SEARCH_KEYS = ("query", "documents", "top_k", "parameters")
PARAMETER_KEYS = ("dimensions", "prompt_name", "normalize")
EMBED_EXAMPLE = '{"inputs": ["first text", "second text"], "parameters": {"dimensions": 256}}'
SEARCH_EXAMPLE = '{"query": "who won?", "documents": ["doc one", "doc two"], "top_k": 5}'


@dataclass(frozen=True)
class EmbedParameters:
    dimensions: int | None = None
    prompt_name: str | None = None
    normalize: bool = True


@dataclass(frozen=True)
class EmbedRequest:
    """Texts to embed, in order."""

    inputs: list[str]
    parameters: EmbedParameters


@dataclass(frozen=True)
class SearchRequest:
    """A query ranked against ``documents``, or against the packed corpus when they are ``None``."""

    query: str
    documents: list[str] | None
    top_k: int
    parameters: EmbedParameters








def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f'"{field}" must be a string, got {type_name(value)}: send non-empty text.')
    if not value.strip():
        raise InvalidInput(f'"{field}" is an empty string: send non-empty text.')
    return check_text(value, field)


def _text_list(value: Any, field: str, allow_single: bool) -> list[str]:
    if allow_single and isinstance(value, str):
        return [_text(value, field)]
    if not isinstance(value, list):
        expected = "a string or a list of strings" if allow_single else "a list of strings"
        raise InvalidInput(f'"{field}" must be {expected}, got {type_name(value)}: send e.g. ["some text"].')
    if not value:
        raise InvalidInput(f'"{field}" is an empty list: send at least one non-empty string.')
    if len(value) > MAX_TEXTS:
        raise InvalidInput(f'"{field}" holds {len(value)} texts, more than the {MAX_TEXTS} one request may carry: '
                           "split them over several requests.")
    return [_text(item, f"{field}[{i}]") for i, item in enumerate(value)]


def parse_parameters(value: Any) -> EmbedParameters:
    """Check the optional ``parameters`` object (``dimensions``, ``prompt_name``, ``normalize``)."""
    if value is None:
        return EmbedParameters()
    if not isinstance(value, dict):
        raise InvalidInput(
            f'"parameters" must be an object, got {type_name(value)}: send e.g. {{"dimensions": 256}} or omit it.'
        )
    check_keys(value, PARAMETER_KEYS, '"parameters"')
    dimensions = value.get("dimensions")
    if dimensions is not None:
        whole = as_int(dimensions)
        if whole is None or whole < 1:
            raise InvalidInput(
                f'"parameters.dimensions" must be a positive integer, got {dimensions!r}: send e.g. 256 or omit it.'
            )
        dimensions = whole
    prompt_name = value.get("prompt_name")
    if prompt_name is not None and not isinstance(prompt_name, str):
        raise InvalidInput(
            f'"parameters.prompt_name" must be a string, got {type_name(prompt_name)}: '
            'send a prompt name such as "query" or omit it.'
        )
    normalize = value.get("normalize", True)
    if not isinstance(normalize, bool):
        raise InvalidInput(
            f'"parameters.normalize" must be a boolean, got {normalize!r}: send true or false, or omit it.'
        )
    return EmbedParameters(dimensions=dimensions, prompt_name=prompt_name, normalize=normalize)


def _parse_search(body: dict[str, Any]) -> SearchRequest:
    check_keys(body, SEARCH_KEYS, "a search request")
    query = _text(body["query"], "query")
    documents = body.get("documents")
    if documents is not None:
        documents = _text_list(documents, "documents", allow_single=False)
    sent_top_k = body.get("top_k", DEFAULT_TOP_K)
    top_k = as_int(sent_top_k)
    if top_k is None or top_k < 1:
        raise InvalidInput(
            f'"top_k" must be an integer of at least 1, got {sent_top_k!r}: '
            f"send e.g. 5, or omit it for {DEFAULT_TOP_K}."
        )
    parameters = parse_parameters(body.get("parameters"))
    if not parameters.normalize:
        raise InvalidInput(
            '"parameters.normalize" cannot be false for a search: scores are cosine similarities of '
            "normalised vectors. Remove it or set it to true."
        )
    return SearchRequest(query=query, documents=documents, top_k=top_k, parameters=parameters)


def parse_embedding_request(body: Any) -> EmbedRequest | SearchRequest:
    """A search when the body has "query", an embedding request when it has "inputs"."""
    if not isinstance(body, dict):
        raise InvalidInput(
            f"the request body must be a JSON object, got {type_name(body)}: "
            f"send e.g. {EMBED_EXAMPLE} or {SEARCH_EXAMPLE}."
        )
    if "query" in body:
        return _parse_search(body)
    if "inputs" in body:
        check_keys(body, EMBED_KEYS, "an embedding request")
        inputs = _text_list(body["inputs"], "inputs", allow_single=True)
        return EmbedRequest(inputs=inputs, parameters=parse_parameters(body.get("parameters")))
    raise InvalidInput(
        'the request needs "inputs" (to embed texts) or "query" (to search): '
        f"send e.g. {EMBED_EXAMPLE} or {SEARCH_EXAMPLE}."
    )
