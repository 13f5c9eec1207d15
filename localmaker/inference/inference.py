"""SageMaker handler hooks: model_fn, input_fn, predict_fn, output_fn.

This file is what a SageMaker PyTorch or Hugging Face container loads by path (``SAGEMAKER_PROGRAM``),
with ``code/`` on ``sys.path``; the local endpoint loads it the same way. It stays a thin dispatcher:
model_fn decides what kind of model the directory holds, predict_fn dispatches on the loaded object's
type, and the work lives in sibling modules, one concern each.

Client errors are raised as ``serving_errors.InferenceError`` subclasses, whose ``status_code`` (400,
406, 415) the toolkit and the local server both turn into that HTTP status.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import media_codecs
from embedding_service import EmbeddingResult, EmbeddingService
from handler_settings import HandlerSettings
from request_schema import parse_embedding_request
from serving_errors import ModelLoadError

logger = logging.getLogger(__name__)


def model_fn(model_dir: str, context: Any = None) -> Any:
    """Load the model in ``model_dir``: an embedding model is any directory with ``config.json``."""
    path = Path(model_dir)
    settings = HandlerSettings.from_env()
    logger.info("model_fn(%s) with %s", path, settings)
    if (path / "model_index.json").is_file():
        raise RuntimeError(
            f"{path} holds a diffusers pipeline (model_index.json): Stable Diffusion support not in this "
            "build. Deploy an embedding model (a directory with config.json) instead."
        )
    if (path / "config.json").is_file():
        return EmbeddingService.load(path, settings)
    raise ModelLoadError(
        f"{path} is not a model this handler can serve: expected config.json (a transformers embedding "
        "model). Check that model.tar.gz has the model files at its top level, next to code/."
    )


def input_fn(input_data: bytes | str, content_type: str, context: Any = None) -> Any:
    """Decode the JSON request body; its schema is checked by predict_fn, which knows the model."""
    return media_codecs.decode_json_body(input_data, content_type)


def predict_fn(data: Any, model: Any, context: Any = None) -> Any:
    """Answer the request with whatever model_fn loaded."""
    if isinstance(model, EmbeddingService):
        return model.handle(parse_embedding_request(data))
    raise TypeError(f"predict_fn cannot serve a {type(model).__name__}: model_fn returned an unknown model type")


def output_fn(prediction: Any, accept: str, context: Any = None) -> tuple[bytes, str]:
    """Encode the prediction as JSON, or as a float32 ``.npy`` array for embeddings when asked."""
    if isinstance(prediction, EmbeddingResult):
        kind = media_codecs.negotiate(accept, (media_codecs.JSON, media_codecs.NPY))
        if kind == media_codecs.NPY:
            return media_codecs.encode_npy(prediction.embeddings), media_codecs.NPY
    else:
        kind = media_codecs.negotiate(accept, (media_codecs.JSON,))
    payload = prediction.to_json() if hasattr(prediction, "to_json") else prediction
    return media_codecs.encode_json(payload), media_codecs.JSON
