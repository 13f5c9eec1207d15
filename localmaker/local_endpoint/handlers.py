"""Find the inference hooks in the user's script, as the SageMaker inference toolkit does.

Each hook is looked up with getattr and falls back to a default; ``context`` is passed only when the
hook's signature names it; transform_fn together with any of input_fn/predict_fn/output_fn is an error
because the toolkit would silently ignore one of them. A hook that returns an iterator streams its answer
(``chunk_streams``).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from localmaker.errors import ConfigurationError
from localmaker.local_endpoint.chunk_streams import ChunkStream, as_chunks, is_chunk_iterator
from localmaker.local_endpoint.default_codecs import default_input_fn, default_output_fn
from localmaker.local_endpoint.errors import BadRequest
from localmaker.local_endpoint.media_types import UTF8_TYPES, concrete


def load_script(code_dir: Path, program: str) -> ModuleType:
    """Import ``code_dir/program`` by file path with ``code_dir`` first on sys.path, like the containers.

    Sibling modules cached from another code folder are dropped first, so two scripts in one process
    (in-process tests) never see each other's helpers.
    """
    path = code_dir / program
    if not path.is_file():
        raise ConfigurationError(
            f"entry point {path} does not exist; put {program} in the artifact's code/ folder "
            "or set SAGEMAKER_PROGRAM to the script's name"
        )
    resolved_dir = code_dir.resolve()
    for sibling in code_dir.glob("*.py"):
        cached = sys.modules.get(sibling.stem)
        cached_file = getattr(cached, "__file__", None)
        if cached is not None and (cached_file is None or Path(cached_file).resolve().parent != resolved_dir):
            del sys.modules[sibling.stem]
    if str(resolved_dir) in sys.path:
        sys.path.remove(str(resolved_dir))
    sys.path.insert(0, str(resolved_dir))
    module_name = f"localmaker_user_script_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        # As the import system does: a script that failed half-way must not look imported.
        sys.modules.pop(module_name, None)
        raise
    return module


def request_body(body: bytes, content_type: str | None) -> bytes | str:
    """What input_fn (or transform_fn) receives: a body of exactly ``application/json`` or ``text/csv``
    as str, decoded as UTF-8, as the toolkit's Transformer.transform hands it on; any other as bytes."""
    if content_type not in UTF8_TYPES:
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"the {content_type} body is not valid UTF-8 ({exc.reason} at byte {exc.start}); the SageMaker "
            "containers decode it as UTF-8 before input_fn, so encode it as UTF-8"
        ) from None


def _call(fn: Callable[..., Any], *args: Any, context: Any) -> Any:
    if _takes_context(fn):
        return fn(*args, context=context)
    return fn(*args)


def _takes_context(fn: Callable[..., Any]) -> bool:
    try:
        return "context" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _default_predict_fn(data: Any, model: Any) -> Any:
    return model(data)


# What a request's hooks answer: a whole body and its Content-Type, or a stream of chunks.
Answer = tuple[bytes, str] | ChunkStream


@dataclass(frozen=True)
class Handlers:
    model_fn: Callable[..., Any]
    input_fn: Callable[..., Any]
    predict_fn: Callable[..., Any]
    output_fn: Callable[..., Any]
    transform_fn: Callable[..., Any] | None = None
    # localmaker's opt-in batching hooks (see model_executor): a real SageMaker container ignores them.
    predict_batch_fn: Callable[..., Any] | None = None
    prepare_fn: Callable[..., Any] | None = None
    # model_lanes_fn(model) -> int: how many model calls may run at once on this model (default 1).
    model_lanes_fn: Callable[..., Any] | None = None

    @property
    def batches(self) -> bool:
        return self.predict_batch_fn is not None and self.transform_fn is None

    @classmethod
    def from_module(cls, module: ModuleType) -> Handlers:
        model_fn = getattr(module, "model_fn", None)
        if model_fn is None:
            raise ConfigurationError(
                f"{module.__file__} defines no model_fn(model_dir); add one that loads and returns your model"
            )
        transform_fn = getattr(module, "transform_fn", None)
        three = [name for name in ("input_fn", "predict_fn", "output_fn") if hasattr(module, name)]
        if transform_fn is not None and three:
            raise ConfigurationError(
                f"{module.__file__} defines transform_fn together with {', '.join(three)}; "
                "define either transform_fn alone or input_fn/predict_fn/output_fn"
            )
        return cls(
            model_fn=model_fn,
            input_fn=getattr(module, "input_fn", None) or default_input_fn,
            predict_fn=getattr(module, "predict_fn", None) or _default_predict_fn,
            output_fn=getattr(module, "output_fn", None) or default_output_fn,
            transform_fn=transform_fn,
            predict_batch_fn=getattr(module, "predict_batch_fn", None),
            prepare_fn=getattr(module, "prepare_fn", None),
            model_lanes_fn=getattr(module, "model_lanes_fn", None),
        )

    def load_model(self, model_dir: Path, context: Any) -> Any:
        return _call(self.model_fn, str(model_dir), context=context)

    def model_lanes(self, model: Any) -> int:
        """How many model threads may call the hooks at once on ``model``: 1 unless the script says more."""
        if self.model_lanes_fn is None:
            return 1
        lanes = self.model_lanes_fn(model)
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise ConfigurationError(f"model_lanes_fn returned {lanes!r}: return a whole number of at least 1, "
                                     "the model calls that may run at once")
        return lanes

    def invoke(self, model: Any, body: bytes | str, content_type: str | None, accept: str,
               context: Any) -> Answer:
        """Run one request through the hooks; returns the response body and its Content-Type, or the
        ChunkStream of a hook that returned an iterator (predict_fn's is passed to output_fn only when
        the script defines one: the default output_fn cannot encode an iterator).

        ``body``, ``content_type`` and ``accept`` are as the toolkit hands them on: see request_body, a
        missing Content-Type is None, and media_types.request_accept has filled in a missing Accept.
        """
        if self.transform_fn is not None:
            return _as_body(_call(self.transform_fn, model, body, content_type, accept, context=context), accept)
        prediction = _call(self.predict_fn, self.decode(body, content_type, context), model, context=context)
        if is_chunk_iterator(prediction) and self.output_fn is default_output_fn:
            return ChunkStream(as_chunks(prediction), concrete(accept))
        return self.encode(prediction, accept, context)


    # The steps of a batched request, run by different threads: decode and prepare in the request's own,
    # predict_batch on the model thread, encode back in the request's own.

    def decode(self, body: bytes | str, content_type: str | None, context: Any) -> Any:
        return _call(self.input_fn, body, content_type, context=context)

    def prepare(self, data: Any, model: Any, context: Any) -> Any:
        """Per-request work that needs the model but not its lock (validation, tokenization)."""
        return data if self.prepare_fn is None else _call(self.prepare_fn, data, model, context=context)

    def predict_batch(self, items: list[Any], model: Any) -> list[Any]:
        assert self.predict_batch_fn is not None
        return list(self.predict_batch_fn(items, model))

    def encode(self, prediction: Any, accept: str, context: Any) -> Answer:
        return _as_body(_call(self.output_fn, prediction, accept, context=context), accept)


def _as_body(result: Any, accept: str) -> Answer:
    """The response a hook's result makes, as the toolkit and its model server make it.

    A tuple is (body, content_type) (Transformer.transform); without one the body is labelled with the
    Accept (media_types.concrete). bytes go as they are, str as UTF-8, an iterator as a stream of chunks
    (chunk_streams), anything else as the model server writes it: ``json.dumps(value, indent=2)``
    (TorchServe's and MMS's create_predict_response).
    """
    content_type = concrete(accept)
    if isinstance(result, tuple) and len(result) >= 2:
        result, content_type = result[0], str(result[1] or content_type)
    if is_chunk_iterator(result):
        return ChunkStream(as_chunks(result), content_type)
    if isinstance(result, bytes | bytearray):
        return bytes(result), content_type
    if isinstance(result, str):
        return result.encode("utf-8"), content_type
    try:
        return json.dumps(result, indent=2).encode("utf-8"), content_type
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"output_fn returned a {type(result).__name__}, which the model server cannot send ({exc}); "
            "return bytes, str, a JSON-serialisable value, or (body, content_type)"
        ) from None
