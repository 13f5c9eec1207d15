"""The request validators are total: any JSON body is a request object or a 400 that names its field.

The modules are imported the way the container imports them (``code/`` on sys.path), so the error class is
the one the handler raises. Bodies are what json.loads can return, which includes NaN and infinities
(Python's json reads ``NaN``), integers of thousands of digits, and strings holding half a surrogate pair
(``"\\ud800"`` is a valid JSON escape).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.inference.handler_loader import sibling
from tests.properties import bounded

embedding = sibling("request_schema")
diffusion = sibling("diffusion_request")
checks = sibling("request_checks")
errors = sibling("serving_errors")
schedulers = sibling("diffusion_schedulers")

HUGE_INTS = st.sampled_from([10**400, -(10**400), 2**64, 2**32, -(2**63)])  # beyond float and int64 range
SURROGATE_TEXT = st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), min_size=1, max_size=3)
ANY_TEXT = st.text(max_size=8) | SURROGATE_TEXT
ANY_SCALAR = st.none() | st.booleans() | st.integers() | HUGE_INTS | st.floats() | ANY_TEXT
ANY_JSON = st.recursive(
    ANY_SCALAR,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3),
    max_leaves=8,
)
TEXT = st.text(min_size=1, max_size=12).filter(str.strip)  # what the schemas accept as text

EMBEDDING_FIELDS = ('"inputs', '"query', '"documents', '"top_k', '"parameters')
DIFFUSION_FIELDS = ('"inputs', '"parameters')


def _check_refusal(err: Any) -> Any:
    """What every refusal owes the caller: a 400 with a message, and no traceback in it."""
    assert err.status_code == 400 and str(err) == err.message
    assert err.message.strip()
    assert "Traceback" not in err.message and 'File "' not in err.message
    return err


def _refusal(parse: Any, body: Any) -> Any:
    with pytest.raises(errors.InvalidInput) as info:
        parse(body)
    return _check_refusal(info.value)


def _parse_or_refusal(parse: Any, body: Any) -> tuple[Any, Any]:
    """``(request, None)`` or ``(None, error)``; any exception other than InvalidInput fails the test."""
    try:
        return parse(body), None
    except errors.InvalidInput as err:
        return None, _check_refusal(err)


def _encodes(value: str) -> bool:
    """What a tokenizer and a JSON response both need: no lone surrogates."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and _encodes(value)


def _names_a_field(message: str, body: Any, known: tuple[str, ...]) -> bool:
    """A documented field in quotes, or an unknown key as the caller spelt it (repr), or the body itself."""
    keys: list[Any] = []
    if isinstance(body, dict):
        keys += list(body)
        if isinstance(body.get("parameters"), dict):
            keys += list(body["parameters"])
    return (
        any(field in message for field in known)
        or any(repr(key) in message for key in keys)
        or "request body" in message
    )


# --- arbitrary bodies --------------------------------------------------------------------------------------

# "dimension", "top-k", "steps" and "prompt" are the typos the schemas exist to refuse
EMBED_PARAMETERS = ANY_JSON | st.fixed_dictionaries(
    {}, optional={"dimensions": ANY_JSON, "prompt_name": ANY_JSON, "normalize": ANY_JSON, "dimension": ANY_JSON}
)
EMBED_BODIES = ANY_JSON | st.fixed_dictionaries(
    {},
    optional={
        "inputs": ANY_JSON | ANY_TEXT | st.lists(ANY_TEXT, max_size=3),
        "query": ANY_JSON | ANY_TEXT,
        "documents": ANY_JSON | st.lists(ANY_TEXT, max_size=3),
        "top_k": ANY_JSON,
        "parameters": EMBED_PARAMETERS,
        "top-k": ANY_JSON,
    },
)


@bounded(300)
@given(EMBED_BODIES)
def test_embedding_parser_accepts_or_answers_400(body: Any) -> None:
    request, err = _parse_or_refusal(embedding.parse_embedding_request, body)
    if err is not None:
        assert _names_a_field(err.message, body, EMBEDDING_FIELDS), err.message
        return
    params = request.parameters
    assert params.dimensions is None or (checks.is_int(params.dimensions) and params.dimensions >= 1)
    assert params.prompt_name is None or isinstance(params.prompt_name, str)
    assert isinstance(params.normalize, bool)
    if isinstance(request, embedding.SearchRequest):
        assert _is_text(request.query) and request.query == body["query"]
        assert request.documents == body.get("documents")
        assert all(_is_text(doc) for doc in request.documents or [])
        assert checks.is_int(request.top_k) and request.top_k >= 1
        assert request.top_k == body.get("top_k", embedding.DEFAULT_TOP_K)
        assert params.normalize
    else:
        assert request.inputs == (body["inputs"] if isinstance(body["inputs"], list) else [body["inputs"]])
        assert request.inputs and all(_is_text(text) for text in request.inputs)


DIFFUSION_PARAMETERS = ANY_JSON | st.fixed_dictionaries(
    {}, optional={name: ANY_JSON for name in (*diffusion.PARAMETER_KEYS, "steps")}
)
DIFFUSION_BODIES = ANY_JSON | st.fixed_dictionaries(
    {}, optional={"inputs": ANY_JSON, "parameters": DIFFUSION_PARAMETERS, "prompt": ANY_JSON}
)


@bounded(300)
@given(DIFFUSION_BODIES)
def test_diffusion_parser_accepts_or_answers_400(body: Any) -> None:
    request, err = _parse_or_refusal(diffusion.parse_diffusion_request, body)
    if err is not None:
        assert _names_a_field(err.message, body, DIFFUSION_FIELDS), err.message
        return
    assert _is_text(request.prompt) and request.prompt == body["inputs"]
    params = request.parameters
    negative = params.negative_prompt
    assert negative is None or (isinstance(negative, str) and _encodes(negative))
    assert isinstance(params.guidance_scale, float) and _within(params.guidance_scale, diffusion.GUIDANCE_RANGE)
    assert _within(params.num_inference_steps, diffusion.STEPS_RANGE)
    assert _within(params.num_images_per_prompt, diffusion.IMAGES_RANGE)
    assert params.seed is None or _within(params.seed, diffusion.SEED_RANGE)
    for size in (params.height, params.width):
        assert size is None or (_within(size, diffusion.SIZE_RANGE) and size % diffusion.SIZE_MULTIPLE == 0)
    assert params.scheduler is None or params.scheduler in schedulers.SCHEDULER_NAMES
    lora = params.lora_scale
    assert lora is None or (isinstance(lora, float) and _within(lora, diffusion.LORA_SCALE_RANGE))


def _within(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]


# --- valid requests from the documented fields are accepted as sent ----------------------------------------

SEARCH_PARAMETERS = st.fixed_dictionaries(
    {},
    optional={
        "dimensions": st.integers(min_value=1) | HUGE_INTS.filter(lambda n: n > 0),
        "prompt_name": st.text(max_size=8) | st.none(),
        "normalize": st.just(True),
    },
)
EMBED_PARAMETERS_VALID = st.fixed_dictionaries(
    {},
    optional={
        "dimensions": st.integers(min_value=1) | st.none(),
        "prompt_name": st.text(max_size=8),
        "normalize": st.booleans(),
    },
)


@bounded(150)
@given(st.one_of(TEXT, st.lists(TEXT, min_size=1, max_size=4)), st.none() | EMBED_PARAMETERS_VALID)
def test_valid_embedding_requests_parse_to_what_was_sent(inputs: Any, parameters: dict[str, Any] | None) -> None:
    body: dict[str, Any] = {"inputs": inputs}
    if parameters is not None:
        body["parameters"] = parameters
    request = embedding.parse_embedding_request(body)
    assert isinstance(request, embedding.EmbedRequest)
    assert request.inputs == (inputs if isinstance(inputs, list) else [inputs])
    sent = parameters or {}
    assert request.parameters == embedding.EmbedParameters(
        dimensions=sent.get("dimensions"), prompt_name=sent.get("prompt_name"), normalize=sent.get("normalize", True)
    )


@bounded(150)
@given(
    TEXT,
    st.none() | st.lists(TEXT, min_size=1, max_size=4),
    st.none() | st.integers(min_value=1, max_value=10_000) | HUGE_INTS.filter(lambda n: n > 0),
    st.none() | SEARCH_PARAMETERS,
)
def test_valid_search_requests_parse_to_what_was_sent(
    query: str, documents: list[str] | None, top_k: int | None, parameters: dict[str, Any] | None
) -> None:
    body: dict[str, Any] = {"query": query}
    for key, value in (("documents", documents), ("top_k", top_k), ("parameters", parameters)):
        if value is not None:
            body[key] = value
    request = embedding.parse_embedding_request(body)
    assert isinstance(request, embedding.SearchRequest)
    assert (request.query, request.documents) == (query, documents)
    assert request.top_k == (embedding.DEFAULT_TOP_K if top_k is None else top_k)
    sent = parameters or {}
    assert (request.parameters.dimensions, request.parameters.prompt_name) == (
        sent.get("dimensions"),
        sent.get("prompt_name"),
    )


def _inclusive_ints(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    low, high = bounds
    return st.sampled_from([low, high]) | st.integers(min_value=low, max_value=high)


def _inclusive_numbers(bounds: tuple[float, float]) -> st.SearchStrategy[float]:
    low, high = bounds
    return (
        st.sampled_from([low, high])
        | st.floats(min_value=low, max_value=high)
        | st.integers(min_value=math.ceil(low), max_value=math.floor(high))  # JSON 7 is a number, not only 7.0
    )


SIZES = st.integers(
    diffusion.SIZE_RANGE[0] // diffusion.SIZE_MULTIPLE, diffusion.SIZE_RANGE[1] // diffusion.SIZE_MULTIPLE
).map(lambda n: n * diffusion.SIZE_MULTIPLE)
VALID_DIFFUSION_PARAMETERS = st.fixed_dictionaries(
    {},
    optional={
        "negative_prompt": st.text(max_size=12),
        "guidance_scale": _inclusive_numbers(diffusion.GUIDANCE_RANGE),
        "num_inference_steps": _inclusive_ints(diffusion.STEPS_RANGE),
        "seed": _inclusive_ints(diffusion.SEED_RANGE),
        "height": SIZES,
        "width": SIZES,
        "num_images_per_prompt": _inclusive_ints(diffusion.IMAGES_RANGE),
        "scheduler": st.sampled_from(schedulers.SCHEDULER_NAMES),
        "lora_scale": _inclusive_numbers(diffusion.LORA_SCALE_RANGE),
    },
)
FLOAT_FIELDS = ("guidance_scale", "lora_scale")
INT_FIELDS = ("num_inference_steps", "seed", "height", "width", "num_images_per_prompt")
DIFFUSION_DEFAULTS = {
    "guidance_scale": diffusion.DEFAULT_GUIDANCE_SCALE,
    "num_inference_steps": diffusion.DEFAULT_STEPS,
    "num_images_per_prompt": diffusion.DEFAULT_IMAGES,
}


@bounded(200)
@given(TEXT, VALID_DIFFUSION_PARAMETERS, st.sets(st.sampled_from(diffusion.PARAMETER_KEYS)))
def test_valid_diffusion_requests_parse_to_what_was_sent(
    prompt: str, parameters: dict[str, Any], nulls: set[str]
) -> None:
    parameters = {**parameters, **dict.fromkeys(nulls)}  # null is documented to mean "the default"
    request = diffusion.parse_diffusion_request({"inputs": prompt, "parameters": parameters})
    assert request.prompt == prompt
    for name in diffusion.PARAMETER_KEYS:
        sent = parameters.get(name)
        parsed = getattr(request.parameters, name)
        expected = DIFFUSION_DEFAULTS.get(name) if sent is None else sent
        assert parsed == expected, name
        if parsed is not None and name in FLOAT_FIELDS:
            assert type(parsed) is float, name  # an integer sent for a float field arrives as a float
        if parsed is not None and name in INT_FIELDS:
            assert type(parsed) is int, name


# --- one field changed to anything: accepted as that value, or refused naming that field -------------------


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = {**body, "parameters": dict(body.get("parameters") or {})}
    if path.startswith("parameters."):
        changed["parameters"][path.split(".", 1)[1]] = value
    else:
        changed[path] = value
    return changed


BASE_SEARCH = {"query": "who won?", "documents": ["doc one", "doc two"], "top_k": 2, "parameters": {}}
BASE_EMBED = {"inputs": ["first", "second"], "parameters": {}}
BASE_IMAGE = {"inputs": "a lighthouse at dusk", "parameters": {}}


@bounded(300)
@given(
    st.sampled_from(
        [(BASE_SEARCH, field) for field in ("query", "documents", "top_k", "parameters")]
        + [(BASE_EMBED, field) for field in ("inputs", "parameters")]
        + [(body, f"parameters.{key}") for body in (BASE_SEARCH, BASE_EMBED) for key in embedding.PARAMETER_KEYS]
    ),
    ANY_JSON,
)
def test_one_bad_embedding_field_is_named(case: tuple[dict[str, Any], str], value: Any) -> None:
    base, field = case
    body = _set(base, field, value)
    request, err = _parse_or_refusal(embedding.parse_embedding_request, body)
    if err is not None:
        assert f'"{field}' in err.message, (field, err.message)
        return
    search = isinstance(request, embedding.SearchRequest)
    texts = [request.query, *(request.documents or [])] if search else request.inputs
    assert all(_is_text(text) for text in texts)
    if field.startswith("parameters."):
        assert getattr(request.parameters, field.split(".", 1)[1]) == value
    elif field != "parameters":
        parsed = getattr(request, field)
        assert parsed == value or (field == "inputs" and parsed == [value])


@bounded(300)
@given(st.sampled_from(["inputs", "parameters", *(f"parameters.{key}" for key in diffusion.PARAMETER_KEYS)]), ANY_JSON)
def test_one_bad_diffusion_field_is_named(field: str, value: Any) -> None:
    body = _set(BASE_IMAGE, field, value)
    request, err = _parse_or_refusal(diffusion.parse_diffusion_request, body)
    if err is not None:
        assert f'"{field}' in err.message, (field, err.message)
        return
    negative = request.parameters.negative_prompt
    assert _is_text(request.prompt) and (negative is None or _encodes(negative))
    if field == "inputs":
        assert request.prompt == value
    elif field.startswith("parameters."):
        name = field.split(".", 1)[1]
        expected = DIFFUSION_DEFAULTS.get(name) if value is None else value
        assert getattr(request.parameters, name) == expected


# --- text the model could not read --------------------------------------------------------------------------

LONE_SURROGATE_TEXT = st.builds(
    lambda before, surrogate, after: before + surrogate + after,
    st.text(max_size=4),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.text(max_size=4),
)
TEXT_FIELDS = [
    pytest.param(embedding.parse_embedding_request, lambda t: {"inputs": t}, '"inputs"', id="inputs"),
    pytest.param(embedding.parse_embedding_request, lambda t: {"inputs": ["ok", t]}, '"inputs[1]"', id="inputs[i]"),
    pytest.param(embedding.parse_embedding_request, lambda t: {"query": t, "documents": ["a"]}, '"query"', id="query"),
    pytest.param(
        embedding.parse_embedding_request,
        lambda t: {"query": "q", "documents": ["a", t]},
        '"documents[1]"',
        id="documents[i]",
    ),
    pytest.param(diffusion.parse_diffusion_request, lambda t: {"inputs": t}, '"inputs"', id="prompt"),
    pytest.param(
        diffusion.parse_diffusion_request,
        lambda t: {"inputs": "x", "parameters": {"negative_prompt": t}},
        '"parameters.negative_prompt"',
        id="negative_prompt",
    ),
]


@pytest.mark.parametrize(("parse", "body_with", "field"), TEXT_FIELDS)
def test_text_with_a_lone_surrogate_is_refused_naming_the_field(parse: Any, body_with: Any, field: str) -> None:
    """JSON's "\\ud800" escape decodes to half a surrogate pair, which the tokenizers refuse with a TypeError:
    accepted, it was a 500 from the model instead of a 400 here."""

    @bounded(25)
    @given(LONE_SURROGATE_TEXT)
    def check(text: str) -> None:
        err = _refusal(parse, body_with(text))
        assert field in err.message and "surrogate" in err.message, err.message

    check()


# --- values just outside each documented bound ------------------------------------------------------------


def _outside_ints(bounds: tuple[int, int]) -> st.SearchStrategy[Any]:
    low, high = bounds
    return st.one_of(
        st.sampled_from([low - 1, high + 1]), st.integers(max_value=low - 1), st.integers(min_value=high + 1)
    )


def _outside_numbers(bounds: tuple[float, float]) -> st.SearchStrategy[Any]:
    low, high = bounds
    return st.one_of(
        st.sampled_from([math.nextafter(low, -math.inf), math.nextafter(high, math.inf), math.nan, 10**400]),
        st.floats(max_value=low, exclude_max=True),
        st.floats(min_value=high, exclude_min=True),
        st.integers(max_value=math.ceil(low) - 1),
        st.integers(min_value=math.floor(high) + 1),
    )


def _float_case(name: str, bounds: tuple[float, float]) -> Any:
    return pytest.param(name, _outside_numbers(bounds), f"{bounds[0]:g} to {bounds[1]:g}", id=name)


def _int_case(name: str, bounds: tuple[int, int]) -> Any:
    return pytest.param(name, _outside_ints(bounds), f"{bounds[0]} to {bounds[1]}", id=name)


RANGED = [
    _float_case("guidance_scale", diffusion.GUIDANCE_RANGE),
    _float_case("lora_scale", diffusion.LORA_SCALE_RANGE),
    _int_case("num_inference_steps", diffusion.STEPS_RANGE),
    _int_case("seed", diffusion.SEED_RANGE),
    _int_case("num_images_per_prompt", diffusion.IMAGES_RANGE),
    _int_case("height", diffusion.SIZE_RANGE),
    _int_case("width", diffusion.SIZE_RANGE),
]


@pytest.mark.parametrize(("name", "outside", "bound_text"), RANGED)
def test_diffusion_values_just_outside_a_bound_are_refused_naming_it(name: str, outside: Any, bound_text: str) -> None:
    @bounded(40)
    @given(outside)
    def check(value: Any) -> None:
        err = _refusal(diffusion.parse_diffusion_request, {"inputs": "x", "parameters": {name: value}})
        assert f'"parameters.{name}"' in err.message and bound_text in err.message, err.message

    check()


@bounded(60)
@given(st.sampled_from(["height", "width"]), SIZES, st.integers(min_value=1, max_value=diffusion.SIZE_MULTIPLE - 1))
def test_image_sizes_off_the_multiple_are_refused_naming_it(name: str, size: int, offset: int) -> None:
    value = size + offset if size + offset <= diffusion.SIZE_RANGE[1] else size - offset
    err = _refusal(diffusion.parse_diffusion_request, {"inputs": "x", "parameters": {name: value}})
    assert f'"parameters.{name}"' in err.message and f"multiple of {diffusion.SIZE_MULTIPLE}" in err.message


INTEGER_FIELDS = ["num_inference_steps", "seed", "num_images_per_prompt", "height", "width"]


@bounded(60)
@given(
    st.sampled_from(INTEGER_FIELDS),
    st.booleans() | st.integers(1, 150).map(lambda n: n + 0.5) | st.integers(1, 150).map(str),
)
def test_integer_fields_refuse_booleans_fractions_and_strings(name: str, value: Any) -> None:
    err = _refusal(diffusion.parse_diffusion_request, {"inputs": "x", "parameters": {name: value}})
    assert f'"parameters.{name}"' in err.message


@bounded(60)
@given(st.sampled_from(INTEGER_FIELDS), st.integers(min_value=1, max_value=8))
def test_a_whole_number_written_as_a_float_is_that_integer(name: str, small: int) -> None:
    value = small * diffusion.SIZE_MULTIPLE * 8 if name in ("height", "width") else small
    sent = json.dumps({"inputs": "x", "parameters": {name: float(value)}})  # "20.0" on the wire
    as_float = diffusion.parse_diffusion_request(json.loads(sent))
    as_int = diffusion.parse_diffusion_request({"inputs": "x", "parameters": {name: value}})
    assert as_float == as_int
    assert type(getattr(as_float.parameters, name)) is int


@bounded(60)
@given(st.integers(max_value=0) | st.sampled_from([0, -(10**400)]))
def test_top_k_below_one_is_refused_naming_it(top_k: int) -> None:
    err = _refusal(embedding.parse_embedding_request, {"query": "q", "documents": ["a"], "top_k": top_k})
    assert '"top_k"' in err.message and "at least 1" in err.message


@bounded(60)
@given(st.integers(max_value=0) | st.sampled_from([0, -(10**400)]))
def test_dimensions_below_one_are_refused_naming_it(dimensions: int) -> None:
    err = _refusal(embedding.parse_embedding_request, {"inputs": "x", "parameters": {"dimensions": dimensions}})
    assert '"parameters.dimensions"' in err.message and "positive integer" in err.message


# --- the shared checks -------------------------------------------------------------------------------------


@bounded(200)
@given(ANY_JSON | HUGE_INTS | st.floats())
def test_type_checks_are_total_and_exact(value: Any) -> None:
    assert checks.is_int(value) == (type(value) is int)
    assert checks.is_number(value) == (type(value) is int or (type(value) is float and math.isfinite(value)))
    assert checks.type_name(value) == ("null" if value is None else type(value).__name__)


@bounded(100)
@given(st.dictionaries(ANY_TEXT, st.none(), max_size=5), st.lists(st.text(max_size=4), max_size=4).map(tuple))
def test_check_keys_refuses_exactly_the_unknown_keys(obj: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if not unknown:
        checks.check_keys(obj, allowed, '"parameters"')
        return
    err = _refusal(lambda body: checks.check_keys(body, allowed, '"parameters"'), obj)
    assert all(repr(key) in err.message for key in unknown) and '"parameters"' in err.message


@bounded(100)
@given(ANY_TEXT)
def test_text_check_refuses_exactly_what_utf8_cannot_carry(value: str) -> None:
    if _encodes(value):
        assert checks.check_text(value, "inputs") is value
        return
    err = _refusal(lambda text: checks.check_text(text, "inputs"), value)
    assert '"inputs"' in err.message and "surrogate" in err.message
    assert _encodes(err.message)  # the message itself goes out in a UTF-8 JSON error body


@bounded(30)
@given(st.integers(min_value=1, max_value=10_000))
def test_top_k_and_dimensions_written_as_floats_are_those_integers(n: int) -> None:
    search = embedding.parse_embedding_request({"query": "q", "documents": ["a"], "top_k": float(n)})
    embed = embedding.parse_embedding_request({"inputs": "x", "parameters": {"dimensions": float(n)}})
    assert type(search.top_k) is int and search.top_k == n
    assert type(embed.parameters.dimensions) is int and embed.parameters.dimensions == n
    for fraction in ({"query": "q", "documents": ["a"], "top_k": n + 0.5},
                     {"inputs": "x", "parameters": {"dimensions": n + 0.5}}):
        _refusal(embedding.parse_embedding_request, fraction)


@bounded(10)
@given(st.integers(min_value=1, max_value=100))
def test_more_texts_than_one_request_may_carry_are_refused_before_any_is_read(extra: int) -> None:
    too_many = ["t"] * (embedding.MAX_TEXTS + extra)
    for body, field in (({"inputs": too_many}, '"inputs"'),
                        ({"query": "q", "documents": too_many}, '"documents"')):
        err = _refusal(embedding.parse_embedding_request, body)
        assert field in err.message and f"more than the {embedding.MAX_TEXTS}" in err.message
    assert len(embedding.parse_embedding_request({"inputs": ["t"] * embedding.MAX_TEXTS}).inputs) == embedding.MAX_TEXTS
