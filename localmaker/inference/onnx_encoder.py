"""An optional ONNX Runtime forward pass for embedding models (LOCALMAKER_EMBEDDING_BACKEND=onnxruntime).

On a CPU, ONNX Runtime runs MiniLM about twice as fast as PyTorch in-process (fused attention and
layer-norm kernels, no Python per layer), and an endpoint about 1.27× (docs/benchmarks.md). MiniLM and
Qwen3 (left padding, last-token pooling) export and pass the check below. It is off by
default: the export costs seconds at the first start, needs two more packages, and is only worth having
where the CPU is the bottleneck.

The model is exported once from a fresh eager-attention copy of the weights (exporting the served model
leaves its torch state unusable) and cached beside the corpus cache, keyed by the weights' fingerprint and
the torch version. Every start checks the runtime against PyTorch on texts of mixed lengths, so a graph
that computes something else (a mask traced as a constant, say) fails the start instead of serving wrong
vectors.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from embedding_pooling import mean_pool
from handler_settings import ENV_EMBEDDING_BACKEND, ONNX_BACKEND
from serving_errors import ModelLoadError

logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
MIN_COSINE = 0.9999  # the peer benchmark's bar for "the same vectors"
OPSET = 17
# Mixed lengths, so the check runs a padded batch: a graph that ignored the attention mask fails it.
PROBE_TEXTS = (
    "short",
    "a somewhat longer sentence about semantic search",
    "the quick brown fox jumps over the lazy dog while a much longer sentence keeps going for a while, "
    "so that the batch holds real padding",
)
INSTALL_HINT = ("pip install 'localmaker[onnx]' (onnx and onnxruntime; in a SageMaker container, list both in "
                "code/requirements.txt)")


class OnnxEncoder:
    """``encoder(inputs) -> last_hidden_state`` over an ONNX Runtime session, as the torch path's is."""

    def __init__(self, session: Any, input_names: Sequence[str], path: Path) -> None:
        self.session = session
        self.input_names = tuple(input_names)
        self.path = path

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {name: inputs[name].cpu().numpy().astype(np.int64) for name in self.input_names}
        return torch.from_numpy(self.session.run(None, feed)[0])


def load_onnx_encoder(model_dir: Path, tokenizer: Any, reference: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                      load_eager: Callable[[], Any], fingerprint: str, cache_dirs: Sequence[Path],
                      threads: int | None = None) -> OnnxEncoder:
    """The cached export for these weights (exported now if missing), checked against ``reference``, the
    served torch forward pass. ``load_eager`` loads a float32 eager-attention copy to export from.
    ``threads`` is each call's share of the cores (default: torch's thread count)."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelLoadError(f"{ENV_EMBEDDING_BACKEND}={ONNX_BACKEND} needs onnxruntime: {INSTALL_HINT}, "
                             "or unset the variable to use PyTorch.") from exc
    probe = tokenizer(list(PROBE_TEXTS), padding=True, return_tensors="pt")
    names = [name for name in INPUT_NAMES if name in probe]
    with torch.inference_mode():
        expected = reference(dict(probe)).float()
    path = _cached_export(model_dir, fingerprint, cache_dirs, names, probe, load_eager)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # Idle pool threads sleep rather than spin: they share the instance's cores with its request threads
    # (the torch path gets the same from OMP_WAIT_POLICY=PASSIVE).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    encoder = OnnxEncoder(session, names, path)
    _check_agreement(expected, encoder(dict(probe)), probe["attention_mask"], path)
    logger.info("embedding forward pass on onnxruntime %s (%s), checked against PyTorch",
                onnxruntime.__version__, path)
    return encoder


def _cached_export(model_dir: Path, fingerprint: str, cache_dirs: Sequence[Path], names: list[str],
                   probe: Any, load_eager: Callable[[], Any]) -> Path:
    file_name = f"encoder-{fingerprint[:16]}-torch{torch.__version__.replace('+', '_')}-opset{OPSET}.onnx"
    for directory in cache_dirs:
        if (directory / file_name).is_file():
            return directory / file_name
    for directory in cache_dirs:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return _export(directory / file_name, names, probe, load_eager)
        except OSError as exc:
            logger.warning("cannot write the ONNX export in %s (%s); trying the next cache folder", directory, exc)
    raise ModelLoadError(f"no writable folder for the ONNX export of {model_dir} among "
                         f"{', '.join(map(str, cache_dirs))}: set LOCALMAKER_CACHE_DIR to one.")


def _export(path: Path, names: list[str], probe: Any, load_eager: Callable[[], Any]) -> Path:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it, and says so less clearly)
    except ImportError as exc:
        raise ModelLoadError(f"exporting the model for {ONNX_BACKEND} needs the onnx package: {INSTALL_HINT}.") from exc
    logger.info("exporting the embedding model to ONNX (first start with these weights) ...")
    module = _HiddenStates(load_eager(), names)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    fd, partial = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():  # tracer notes on Python branches; the agreement check is the judge
            warnings.simplefilter("ignore")
            torch.onnx.export(module, tuple(probe[name] for name in names), partial, input_names=names,
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=OPSET,
                              dynamo=False)
        os.replace(partial, path)  # a concurrent start sees the whole file or none
    except Exception as exc:
        Path(partial).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise
        raise ModelLoadError(f"this model could not be exported for {ONNX_BACKEND} ({type(exc).__name__}: "
                             f"{exc}); unset {ENV_EMBEDDING_BACKEND} to serve it with PyTorch.") from exc
    return path


class _HiddenStates(torch.nn.Module):
    """Positional inputs in, the last hidden state out: the signature an ONNX graph has."""

    def __init__(self, transformer: Any, names: list[str]) -> None:
        super().__init__()
        self.transformer = transformer
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.transformer(**dict(zip(self.names, tensors, strict=True))).last_hidden_state


def _check_agreement(expected: torch.Tensor, actual: torch.Tensor, mask: torch.Tensor, path: Path) -> None:
    """Mean-pooled rows must agree to ``MIN_COSINE``: the padded positions are left out, as pooling leaves them."""
    rows = [mean_pool(states, mask) for states in (expected, actual)]
    cosine = float(torch.nn.functional.cosine_similarity(rows[0], rows[1], dim=1).min())
    if not cosine >= MIN_COSINE:
        raise ModelLoadError(f"the ONNX export {path} computes different vectors from PyTorch (cosine {cosine:.6f}, "
                             f"needed ≥ {MIN_COSINE}): delete it to export again, or unset "
                             f"{ENV_EMBEDDING_BACKEND} to serve with PyTorch.")
