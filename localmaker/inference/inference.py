"""SageMaker handler hooks: model_fn, input_fn, predict_fn, output_fn.

This file is what a SageMaker PyTorch or Hugging Face container loads by path (``SAGEMAKER_PROGRAM``),
with ``code/`` on ``sys.path``; the local endpoint loads it the same way. It stays a thin dispatcher:
model_fn decides what kind of model the directory holds, predict_fn dispatches on the loaded object's
type, and the work lives in sibling modules, one concern each.

Client errors are raised as ``serving_errors.InferenceError`` subclasses, whose ``status_code`` (400,
406, 415, and 503 when a generation runs out of GPU memory) the toolkit and the local server both turn
into that HTTP status.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import image_codecs
import media_codecs
from diffusion_progress import JSON_LINES
from diffusion_request import DiffusionRequest, parse_diffusion_request
from diffusion_service import DiffusionResult, DiffusionService
from embedding_service import EmbeddingResult, EmbeddingService
from handler_settings import HandlerSettings
from request_schema import parse_embedding_request
from serving_errors import ModelLoadError, UnsupportedAccept

logger = logging.getLogger(__name__)


def model_fn(model_dir: str, context: Any = None) -> Any:
    """Load the model in ``model_dir``: a diffusers pipeline has ``model_index.json``, an embedding
    model ``config.json``."""
    path = Path(model_dir)
    settings = HandlerSettings.from_env()
    logger.info("model_fn(%s) with %s", path, settings)
    if (path / "model_index.json").is_file():
        return DiffusionService.load(path, settings)
    if (path / "config.json").is_file():
        return EmbeddingService.load(path, settings)
    raise ModelLoadError(
        f"{path} is not a model this handler can serve: expected model_index.json (a Stable Diffusion "
        "pipeline) or config.json (a transformers embedding model). Check that model.tar.gz has the model "
        "files at its top level, next to code/."
    )


def input_fn(input_data: bytes | str, content_type: str, context: Any = None) -> Any:
    """Decode the JSON request body; its schema is checked by predict_fn, which knows the model."""
    return media_codecs.decode_json_body(input_data, content_type)


def predict_fn(data: Any, model: Any, context: Any = None) -> Any:
    """Answer the request with whatever model_fn loaded."""
    if isinstance(model, EmbeddingService):
        return model.handle(parse_embedding_request(data))
    if isinstance(model, DiffusionService):
        return model.handle(_encodable(parse_diffusion_request(data), context))
    raise TypeError(f"predict_fn cannot serve a {type(model).__name__}: model_fn returned an unknown model type")


def prepare_fn(data: Any, model: Any, context: Any = None) -> Any:
    """localmaker's batching hook, run in the request's own thread: check the request against the model
    and tokenize it, so the model thread only runs forward passes. SageMaker's containers ignore it."""
    if isinstance(model, EmbeddingService):
        return model.prepare(parse_embedding_request(data))
    if isinstance(model, DiffusionService):
        return model.prepare(_encodable(parse_diffusion_request(data), context))
    raise TypeError(f"prepare_fn cannot serve a {type(model).__name__}: model_fn returned an unknown model type")


def predict_batch_fn(prepared: list[Any], model: Any, context: Any = None) -> list[Any]:
    """localmaker's batching hook: answer requests that arrived together in one pass over the model.
    Each answer is a result or the exception for that request alone."""
    return list(model.run(prepared))


def model_lanes_fn(model: Any) -> int:
    """localmaker's hook: how many batches may run at once on ``model``, each from its own model thread.
    An embedding model on a CPU runs one per core (EmbeddingModel.spread_over_lanes); diffusion, one."""
    return model.model.lanes if isinstance(model, EmbeddingService) else 1


def output_fn(prediction: Any, accept: str, context: Any = None) -> tuple[bytes | Iterator[bytes], str]:
    """Encode the prediction as JSON; or a float32 ``.npy`` array for embeddings, or one image as
    PNG or JPEG, when asked. A streamed generation's lines go on as they come, in JSON Lines."""
    if isinstance(prediction, Iterator):
        return prediction, JSON_LINES
    if isinstance(prediction, DiffusionResult):
        return _encode_images(prediction, accept)
    if isinstance(prediction, EmbeddingResult):
        kind = media_codecs.negotiate(accept, (media_codecs.JSON, media_codecs.NPY))
        if kind == media_codecs.NPY:
            return media_codecs.encode_npy(prediction.embeddings), media_codecs.NPY
    else:
        kind = media_codecs.negotiate(accept, (media_codecs.JSON,))
    payload = prediction.to_json() if hasattr(prediction, "to_json") else prediction
    return media_codecs.encode_json(payload), media_codecs.JSON


def _encodable(request: DiffusionRequest, context: Any) -> DiffusionRequest:
    """``request``, once its Accept is known to fit its image count: a 406 before generating, not after.

    The Accept header reaches the hooks before output_fn only through localmaker's context (its
    ``headers``); without one (a SageMaker container's context) output_fn still refuses, only later.
    """
    headers = getattr(context, "headers", None)
    if isinstance(headers, dict):
        # dict(request.headers) keeps the names as sent, and HTTP header names are case-insensitive.
        accept = next((value for name, value in headers.items() if name.lower() == "accept"), "")
        if request.stream:
            _stream_kind(accept)
        else:
            _image_kind(accept, request.parameters.num_images_per_prompt)
    return request


def _stream_kind(accept: str | None) -> str:
    """A streamed generation answers JSON Lines; an Accept of JSON is taken to mean it too."""
    try:
        return media_codecs.negotiate(accept, (JSON_LINES, media_codecs.JSON))
    except UnsupportedAccept:
        raise UnsupportedAccept(
            f'Accept {accept!r} cannot carry a streamed generation ("stream": true), which answers '
            f"{JSON_LINES}: one JSON line per denoising step, then the result with the images as base64 PNG. "
            f"Ask for {JSON_LINES}, or leave out \"stream\" to get the image alone."
        ) from None


def _image_kind(accept: str | None, images: int) -> str:
    """The type to answer ``images`` images in: JSON for any number, PNG or JPEG for exactly one."""
    kind = media_codecs.negotiate(accept, (media_codecs.JSON, media_codecs.PNG, media_codecs.JPEG))
    if kind != media_codecs.JSON and images != 1:
        try:  # "image/png, application/json" still gets the images, as JSON
            kind = media_codecs.negotiate(accept, (media_codecs.JSON,))
        except UnsupportedAccept:
            raise UnsupportedAccept(
                f"Accept {accept!r} carries exactly one image but this request asks for {images}: "
                f"ask for {media_codecs.JSON} (images as base64 PNG), or set num_images_per_prompt to 1."
            ) from None
    return kind


def _encode_images(result: DiffusionResult, accept: str) -> tuple[bytes, str]:
    """JSON for any number of images; raw PNG or JPEG bytes when exactly one image was generated."""
    kind = _image_kind(accept, len(result.images))
    if kind == media_codecs.JSON:
        return media_codecs.encode_json(result.to_json()), media_codecs.JSON
    encode = image_codecs.encode_png if kind == media_codecs.PNG else image_codecs.encode_jpeg
    return encode(result.images[0]), kind
