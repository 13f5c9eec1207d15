"""The OpenAPI 3.1 document of the container API: GET /ping, POST /invocations, and the error body.

It is built from the constants the code uses (the built-in handlers' fields and limits, the payload
limit, the error classes), and tests validate the built-in models' real responses against it, so it
cannot drift from what an endpoint answers. Each instance serves it at ``GET /openapi.json``, which is a
localmaker addition: SageMaker's container contract has only /ping and /invocations.
"""

from __future__ import annotations

from typing import Any

import localmaker
from localmaker.local_endpoint import builtin_request_rules as rules
from localmaker.local_endpoint import errors
from localmaker.local_endpoint.model_holder import LoadState
from localmaker.spec.names import CUSTOM_ATTRIBUTES_HEADER, MAX_PAYLOAD_BYTES

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _nullable(schema_type: str, **rest: Any) -> dict[str, Any]:
    """The handlers read ``params.get(name)``, so an explicit null means "the default"."""
    return {"type": [schema_type, "null"], **rest}


def _object(properties: dict[str, Any], required: tuple[str, ...] = (), nullable: bool = False,
            **rest: Any) -> dict[str, Any]:
    """Closed objects: the handlers refuse unknown fields, so a typo is a 400 and not a silent default."""
    schema: dict[str, Any] = {"type": ["object", "null"] if nullable else "object", "properties": properties,
                              "additionalProperties": False, **rest}
    if required:
        schema["required"] = list(required)
    return schema


def _range(schema_type: str, bounds: tuple[float, float], **rest: Any) -> dict[str, Any]:
    return _nullable(schema_type, minimum=bounds[0], maximum=bounds[1], **rest)


def _embedding_schemas() -> dict[str, Any]:
    text_list = {"type": "array", "minItems": 1, "maxItems": rules.MAX_TEXTS, "items": _ref("NonBlankText")}
    parameters = {
        "dimensions": _nullable("integer", minimum=1,
                                description="Matryoshka truncation (renormalised); at most the model's dimension"),
        "prompt_name": _nullable("string", description='one of the model\'s prompts, e.g. "query"'),
        "normalize": {"type": "boolean", "default": True},
    }
    search_parameters = {**parameters, "normalize": {"const": True, "description": "scores are cosines"}}
    return {
        "EmbeddingParameters": _object(parameters, nullable=True),
        "SearchParameters": _object(search_parameters, nullable=True),
        "EmbeddingRequest": _object({
            "inputs": {"oneOf": [_ref("NonBlankText"), text_list]},
            "parameters": _ref("EmbeddingParameters"),
        }, required=("inputs",), description="texts to embed, in order"),
        "SearchRequest": _object({
            "query": _ref("NonBlankText"),
            "documents": {**text_list, "type": ["array", "null"],
                          "description": "the texts to rank; omitted, the corpus packed with the model"},
            "top_k": {"type": "integer", "minimum": 1, "default": rules.DEFAULT_TOP_K},
            "parameters": _ref("SearchParameters"),
        }, required=("query",), description="a query ranked against documents by cosine similarity"),
        "EmbeddingResponse": _object({
            "embeddings": {"type": "array", "minItems": 1,
                           "items": {"type": "array", "minItems": 1, "items": {"type": "number"}}},
            "dimensions": {"type": "integer", "minimum": 1},
            "usage": _object({"tokens": {"type": "integer", "minimum": 0}}, required=("tokens",)),
        }, required=("embeddings", "dimensions", "usage"), description="row i embeds input i"),
        "SearchHit": _object({
            "rank": {"type": "integer", "minimum": 1},
            "index": {"type": "integer", "minimum": 0, "description": "position in documents (or the corpus)"},
            "score": {"type": "number"},
            "text": {"type": "string"},
            "id": {"type": ["string", "integer"], "description": "the corpus document's id, when it has one"},
        }, required=("rank", "index", "score", "text")),
        "SearchResponse": _object({"results": {"type": "array", "items": _ref("SearchHit")}},
                                  required=("results",), description="hits, best first"),
    }


def _image_schemas() -> dict[str, Any]:
    size = {"multipleOf": rules.SIZE_MULTIPLE, "description": "default: the model's native size"}
    parameters = {
        "negative_prompt": _nullable("string"),
        "guidance_scale": _range("number", rules.GUIDANCE_RANGE, default=rules.DEFAULT_GUIDANCE_SCALE),
        "num_inference_steps": _range("integer", rules.STEPS_RANGE, default=rules.DEFAULT_STEPS),
        "seed": _range("integer", rules.SEED_RANGE, description="default: random, and reported"),
        "height": _range("integer", rules.SIZE_RANGE, **size),
        "width": _range("integer", rules.SIZE_RANGE, **size),
        "num_images_per_prompt": _range("integer", rules.IMAGES_RANGE, default=rules.DEFAULT_IMAGES,
                                        description="also bounded by the pixel budget (LOCALMAKER_MAX_PIXELS)"),
        "scheduler": {"enum": [*rules.SCHEDULER_NAMES, None], "description": "default: the model's own"},
        "lora_scale": _range("number", rules.LORA_SCALE_RANGE, default=rules.DEFAULT_LORA_SCALE,
                             description="only when the model has a LoRA adapter"),
    }
    seed = {"type": "integer", "minimum": rules.SEED_RANGE[0], "maximum": rules.SEED_RANGE[1]}
    effective = {
        "negative_prompt": _nullable("string"),
        "guidance_scale": {"type": "number"},
        "num_inference_steps": {"type": "integer"},
        "seed": seed,
        "height": {"type": "integer"},
        "width": {"type": "integer"},
        "num_images_per_prompt": {"type": "integer"},
        "scheduler": {"type": "string", "description": "a request name, or the class name of the model's own"},
        "lora_scale": _nullable("number"),
    }
    png = {"type": "string", "contentEncoding": "base64", "contentMediaType": rules.PNG}
    return {
        "ImageParameters": _object(parameters, nullable=True),
        "ImageRequest": _object({"inputs": _ref("NonBlankText"), "parameters": _ref("ImageParameters"),
                                 "stream": {"type": "boolean", "description": f"true: answer {rules.JSON_LINES}, "
                                            "an ImageProgress line per denoising step, then the ImageResponse"}},
                                required=("inputs",), description="one prompt; several images via "
                                                                  "parameters.num_images_per_prompt"),
        "ImageProgress": _object({"step": {"type": "integer", "minimum": 1}, "total": {"type": "integer"},
                                  "elapsed_s": {"type": "number", "minimum": 0}},
                                 required=("step", "total", "elapsed_s"),
                                 description="one streamed line: a denoising step has ended"),
        "ImageResponse": _object({
            "images": {"type": "array", "minItems": 1, "items": png},
            "seeds": {"type": "array", "items": seed, "description": "image i used seeds[i]"},
            "parameters": _object(effective, required=tuple(effective),
                                  description="the effective values, defaults resolved"),
            "timings": _object({"total_s": {"type": "number", "minimum": 0},
                                "per_step_ms": {"type": "number", "minimum": 0}},
                               required=("total_s", "per_step_ms")),
            "warnings": {"type": "array", "items": {"type": "string"}},
            "nsfw_content_detected": {"type": "array", "items": {"type": "boolean"},
                                      "description": "present when the model has a safety checker"},
        }, required=("images", "seeds", "parameters", "timings", "warnings")),
    }


def _error_schema() -> dict[str, Any]:
    codes = sorted({cls.code for cls in (errors.BadRequest, errors.UnsupportedAccept, errors.PayloadTooLarge,
                                         errors.UnsupportedContentType, errors.ModelNotReady,
                                         errors.ModelLoadFailed, errors.HandlerFailure)})
    return _object({
        "error": _object({
            "code": {"type": "string",
                     "description": f"the container's own codes are {', '.join(codes)}; an error a handler raises "
                                    "with its own status_code has the exception's class name, e.g. InvalidInput"},
            "message": {"type": "string", "maxLength": errors.MAX_MESSAGE_CHARS,
                        "description": "what was wrong and how to fix it; never a traceback"},
        }, required=("code", "message")),
    }, required=("error",))


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {rules.JSON: {"schema": _ref("Error")}}}


def _binary(media_type: str) -> dict[str, Any]:
    return {"schema": {"type": "string", "format": "binary", "contentMediaType": media_type}}


def _invocations() -> dict[str, Any]:
    return {"post": {
        "operationId": "invoke",
        "summary": "Run one request through the model (SageMaker's InvokeEndpoint reaches this)",
        "parameters": [
            {"name": "Accept", "in": "header", "schema": {"type": "string"},
             "description": f"{rules.JSON} (default), {rules.NPY} for embeddings as a float32 array, "
                            f"{rules.PNG} or {rules.JPEG} for exactly one image"},
            {"name": CUSTOM_ATTRIBUTES_HEADER, "in": "header", "schema": {"type": "string"},
             "description": "passed to handlers as context.custom_attributes"},
        ],
        "requestBody": {"required": True,
                        "description": f"at most {MAX_PAYLOAD_BYTES} bytes (SageMaker's real-time limit)",
                        "content": {t: {"schema": _ref("InvocationRequest")} for t in rules.REQUEST_TYPES}},
        "responses": {
            "200": {"description": "the prediction, in the negotiated type; a handler that returns an iterator "
                                   "streams it (Transfer-Encoding: chunked, a chunk per item), as the built-in "
                                   f"Stable Diffusion handler does for \"stream\": true ({rules.JSON_LINES})",
                    "headers": {CUSTOM_ATTRIBUTES_HEADER: {"schema": {"type": "string"},
                                                    "description": "when the handler set one"}},
                    "content": {rules.JSON: {"schema": _ref("InvocationResponse")},
                                rules.NPY: _binary(rules.NPY), rules.PNG: _binary(rules.PNG),
                                rules.JPEG: _binary(rules.JPEG),
                                rules.JSON_LINES: {"schema": {"type": "string", "description": "lines of "
                                                              "ImageProgress, then one ImageResponse"}}}},
            "400": _error_response("a malformed body, or a field missing, unknown, of the wrong type or out of range"),
            "406": _error_response("the Accept type cannot be produced"),
            "413": _error_response(f"the body is over {MAX_PAYLOAD_BYTES} bytes"),
            "415": _error_response("the Content-Type is not one the handler decodes"),
            "500": _error_response("the handler failed (HandlerFailure); the traceback is in the instance log"),
            "503": _error_response("the model is not loaded (yet), or the accelerator ran out of memory on this "
                                   "request; the next one is served"),
        },
    }}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document, safe for the caller to modify."""
    schemas: dict[str, Any] = {
        "NonBlankText": {"type": "string", "pattern": r"\S", "description": "text with a non-space character"},
        **_embedding_schemas(),
        **_image_schemas(),
        "InvocationRequest": {"description": "what the built-in handlers accept: the embedding model takes an "
                                             "EmbeddingRequest or a SearchRequest, Stable Diffusion an ImageRequest",
                              "anyOf": [_ref("EmbeddingRequest"), _ref("SearchRequest"), _ref("ImageRequest")]},
        "InvocationResponse": {"anyOf": [_ref("EmbeddingResponse"), _ref("SearchResponse"), _ref("ImageResponse")]},
        "PingResponse": _object({"status": {"const": LoadState.HEALTHY.value}}, required=("status",)),
        "Error": _error_schema(),
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "localmaker inference container",
            "version": localmaker.__version__,
            "description": "The SageMaker real-time container contract (GET /ping, POST /invocations) as the "
                           "built-in handlers answer it, for the embedding model and Stable Diffusion. "
                           "GET /openapi.json is a localmaker addition, not part of SageMaker.",
        },
        "servers": [{"url": "http://127.0.0.1:8080", "description": "`localmaker serve`'s default address"}],
        "paths": {
            "/ping": {"get": {
                "operationId": "ping",
                "summary": "Health check: 200 once model_fn has returned",
                "responses": {
                    "200": {"description": "the model is loaded",
                            "content": {rules.JSON: {"schema": _ref("PingResponse")}}},
                    "503": {**_error_response("ModelNotReady while model_fn runs; ModelLoadFailed, with its "
                                              "message, when it raised"),
                            "headers": {"Retry-After": {"schema": {"type": "string"}}}},
                },
            }},
            "/invocations": _invocations(),
            "/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document (a localmaker addition, not part of SageMaker)",
                "responses": {"200": {"description": "the OpenAPI document",
                                      "content": {rules.JSON: {"schema": {"type": "object"}}}}},
            }},
        },
        "components": {"schemas": schemas},
    }
