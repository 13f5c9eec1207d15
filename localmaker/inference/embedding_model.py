"""A text-embedding model loaded the way production loads it: AutoTokenizer + AutoModel + pooling.

The same code serves the bundled MiniLM, a tiny test Qwen3 and the real Qwen3-Embedding; what differs
between them (pooling, truncation, prompts) comes from the model's own files (see embedding_layout).
Weights load from safetensors only unless the operator opts in to pickle, because unpickling a
downloaded ``.bin`` runs arbitrary code.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import embedding_pooling
import numpy as np
import torch
from cache_folders import cache_dirs
from device_placement import dtype_kwarg_name, resolve_device, resolve_dtype
from embedding_layout import MAX_SEQ_LENGTH_CAP, EmbeddingLayout, read_layout
from handler_settings import ENV_ALLOW_PICKLE, ENV_EMBEDDING_BACKEND, ONNX_BACKEND, HandlerSettings
from serving_errors import ModelLoadError

logger = logging.getLogger(__name__)

_PROGRESS_MIN_BATCHES = 3
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")


@dataclass(frozen=True)
class EmbedOutput:
    """Pooled float32 vectors, one row per text (not yet normalised), and the real tokens read."""

    vectors: np.ndarray
    token_count: int


def _weight_files(model_dir: Path) -> list[Path]:
    return sorted({p for pattern in _WEIGHT_PATTERNS for p in model_dir.glob(pattern) if p.is_file()})


def model_fingerprint(model_dir: Path) -> str:
    """A cheap identity of the weights: config.json bytes plus weight file names and sizes.

    Hashing gigabytes of weights at every start would cost more than the corpus embedding it guards.
    """
    digest = hashlib.sha256()
    config = model_dir / "config.json"
    digest.update(config.read_bytes() if config.is_file() else b"")
    for path in _weight_files(model_dir):
        digest.update(f"\0{path.name}\0{path.stat().st_size}".encode())
    return digest.hexdigest()


# The forward pass: padded inputs on the model's device in, the last hidden state out.
Encoder = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def _load_transformer(model_dir: Path, settings: HandlerSettings, dtype: torch.dtype,
                      attention: str = "sdpa") -> Any:
    from transformers import AutoModel

    has_safetensors = any(model_dir.glob("*.safetensors"))
    if not has_safetensors and not settings.allow_pickle:
        raise ModelLoadError(
            f"{model_dir} holds no *.safetensors weights. Convert the checkpoint to safetensors "
            f"(model.save_pretrained(dir, safe_serialization=True)), or set {ENV_ALLOW_PICKLE}=1 to allow "
            "loading pickled .bin weights, which can run arbitrary code."
        )
    kwargs: dict[str, Any] = {
        "use_safetensors": has_safetensors,
        "trust_remote_code": settings.trust_remote_code,
        dtype_kwarg_name(): dtype,
    }
    try:
        return AutoModel.from_pretrained(str(model_dir), attn_implementation=attention, **kwargs)
    except (ValueError, ImportError) as exc:
        # Not every architecture supports SDPA; the eager attention is the same maths, only slower.
        logger.info("SDPA attention not available for this model (%s); using the default", exc)
        return AutoModel.from_pretrained(str(model_dir), **kwargs)


class EmbeddingModel:
    """Tokenizer, transformer and pooling, with the truncation and prompts the model declares."""

    def __init__(
        self,
        tokenizer: Any,
        transformer: Any,
        layout: EmbeddingLayout,
        device: torch.device,
        dtype: torch.dtype,
        max_length: int,
        batch_size: int,
        fingerprint: str,
        max_batch_tokens: int = 16384,
    ) -> None:
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.encoder: Encoder = self._torch_forward  # load() swaps in a packed or an ONNX Runtime pass
        self.packed = False  # whether padding costs the encoder nothing (packed_encoder.py)
        self.lanes = 1  # batches that may run at once, each from its own model thread (spread_over_lanes)
        self.layout = layout
        self.device = device
        self.dtype = dtype
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.fingerprint = fingerprint
        self._tokenizer_lock = threading.Lock()
        self._prompt_lengths: dict[str, int] = {}
        self.dimension = int(self._hidden_size())

    @classmethod
    def load(cls, model_dir: Path, settings: HandlerSettings) -> EmbeddingModel:
        """Load from a transformers model directory (one with config.json)."""
        from transformers import AutoTokenizer

        device = resolve_device(settings.device)
        dtype = resolve_dtype(device, settings.dtype)
        layout = read_layout(model_dir, settings.pooling)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=settings.trust_remote_code)
        transformer = _load_transformer(model_dir, settings, dtype).to(device).eval()
        model = cls(
            tokenizer=tokenizer,
            transformer=transformer,
            layout=layout,
            device=device,
            dtype=dtype,
            max_length=_max_length(layout, tokenizer, transformer),
            batch_size=settings.batch_size,
            fingerprint=model_fingerprint(model_dir),
            max_batch_tokens=settings.max_batch_tokens,
        )
        # One lane per thread on a CPU (spread_over_lanes); chosen now, since ONNX Runtime fixes its
        # threads per call when its session is made.
        model.lanes = settings.embedding_lanes or (torch.get_num_threads() if device.type == "cpu" else 1)
        if settings.embedding_backend == ONNX_BACKEND:
            model.encoder = _onnx_encoder(model_dir, settings, model)
        elif settings.packed_batches if settings.packed_batches is not None else device.type == "cpu":
            model.use_packed_encoder()
        logger.info(
            "loaded embedding model %s on %s (%s), dimension %d, max_length %d",
            model_dir,
            device,
            str(dtype).removeprefix("torch."),
            model.dimension,
            model.max_length,
        )
        return model

    def use_packed_encoder(self) -> None:
        """Run packed texts from now on, where the model computes the same states that way."""
        from packed_encoder import packed_encoder

        encoder = packed_encoder(self.transformer)
        if encoder is not None:
            self.encoder, self.packed = encoder, True

    def spread_over_lanes(self) -> None:
        """Give each of the model's lanes its share of torch's threads (with ``lanes`` > 1, on a CPU).

        On a CPU one batch per core beats every core on one batch: each op of a batch spread over cores
        waits for its slowest core, and the instance's request threads take a core now and then, which
        then stalls the other as well. In-process, two lanes of one thread ran arrival-order batches of 16
        1.1-1.2x faster than one lane of two (docs/benchmarks.md). A lone request then runs on one core.
        Called after the corpus is embedded, which has the cores to itself.
        """
        if self.lanes > 1 and self.device.type == "cpu":
            torch.set_num_threads(max(1, torch.get_num_threads() // self.lanes))
        logger.info("embedding batches run %d at a time, on %d thread(s) each", self.lanes,
                    torch.get_num_threads())

    @property
    def prompts(self) -> dict[str, str]:
        return self.layout.prompts

    def _hidden_size(self) -> int:
        config = self.transformer.config
        for name in ("hidden_size", "d_model", "dim"):
            value = getattr(config, name, None)
            if isinstance(value, int):
                return value
        raise ModelLoadError("cannot tell the embedding dimension: config.json has no hidden_size.")

    def _prompt_length(self, prompt: str) -> int:
        """Tokens the prompt occupies at the start of each input, not counting a trailing special token."""
        if prompt not in self._prompt_lengths:
            ids = self.tokenizer(prompt, truncation=True, max_length=self.max_length)["input_ids"]
            length = len(ids)
            if ids and ids[-1] in set(self.tokenizer.all_special_ids):
                length -= 1
            self._prompt_lengths[prompt] = length
        return self._prompt_lengths[prompt]

    def tokenize(self, texts: Sequence[str], prompt: str | None = None) -> list[TokenizedText]:
        """Token ids for ``texts`` with ``prompt`` (else the model's default prompt) prepended, truncated,
        not padded.

        Request threads call this outside the model thread. The lock is there because a fast tokenizer
        mutates its Rust state when its padding or truncation settings change, and two threads doing
        that at once fail with "Already borrowed".
        """
        if prompt is None:
            prompt = self.layout.default_prompt
        if prompt:
            texts = [prompt + text for text in texts]
        with self._tokenizer_lock:
            prompt_length = self._prompt_length(prompt) if prompt and not self.layout.include_prompt else 0
            encoded = self.tokenizer(list(texts), padding=False, truncation="longest_first",
                                     max_length=self.max_length)
        keys = [key for key in encoded if key in ("input_ids", "token_type_ids", "attention_mask")]
        return [TokenizedText({key: encoded[key][i] for key in keys}, prompt_length) for i in range(len(texts))]

    def embed(self, texts: Sequence[str], prompt: str | None = None, show_progress: bool = False) -> EmbedOutput:
        """Pooled vectors for ``texts`` with ``prompt`` prepended."""
        return self.embed_tokens(self.tokenize(texts, prompt), show_progress=show_progress)

    def embed_tokens(self, texts: Sequence[TokenizedText], show_progress: bool = False) -> EmbedOutput:
        """Pooled vectors, row ``i`` for ``texts[i]``, from length-sorted batches under the token budget.

        Sorting by length keeps each batch's padding small; the budget (rows x longest row) keeps a batch
        of long texts from taking the memory a batch of short ones may. A packed encoder pads nothing, so
        its batches are not split by length.
        """
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        batches = token_budget_batches([t.length for t in texts], self.batch_size, self.max_batch_tokens,
                                       min_fill=0.0 if self.packed else MIN_FILL)
        for rows in _with_progress(batches, show_progress):
            padded = self._pad([texts[i].features for i in rows])
            inputs = {key: value.to(self.device) for key, value in padded.items()}
            with torch.inference_mode():
                states = self.encoder(inputs).float()
            prompt_lengths = torch.tensor([texts[i].prompt_length for i in rows])
            pool_mask = embedding_pooling.exclude_prompt_tokens(padded["attention_mask"], prompt_lengths)
            pooled = embedding_pooling.pool(self.layout.pooling, states, pool_mask.to(self.device))
            vectors[rows] = pooled.cpu().numpy()
        return EmbedOutput(vectors=vectors, token_count=sum(t.length for t in texts))

    def _torch_forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.transformer(**inputs).last_hidden_state

    def _pad(self, features: list[dict[str, list[int]]]) -> Any:
        with self._tokenizer_lock:
            return self.tokenizer.pad(features, padding=True, return_tensors="pt")


@dataclass(frozen=True)
class TokenizedText:
    """One text's token ids (and companions such as token_type_ids), before padding."""

    features: dict[str, list[int]]
    prompt_length: int = 0  # leading tokens left out of pooling (include_prompt: false)

    @property
    def length(self) -> int:
        return len(self.features["input_ids"])


# A row shorter than this share of its group's longest starts a new group: padding stays under ~30%.
MIN_FILL = 0.7


def token_budget_batches(lengths: Sequence[int], max_rows: int, max_tokens: int,
                         min_fill: float = MIN_FILL) -> list[list[int]]:
    """Indices grouped longest first, each group at most ``max_rows`` rows and ``max_tokens`` padded tokens,
    and no row shorter than ``min_fill`` of its group's longest (padding is compute spent on nothing).

    A single text longer than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        current = batches[-1] if batches else None
        # Longest first, so the group's padded width is its first row's length.
        width = lengths[current[0]] if current else 0
        if (current and len(current) < max_rows and width * (len(current) + 1) <= max_tokens
                and lengths[index] >= min_fill * width):
            current.append(index)
        else:
            batches.append([index])
    return batches


def _with_progress(batches: list[list[int]], show_progress: bool) -> Iterable[list[int]]:
    if not show_progress or len(batches) <= _PROGRESS_MIN_BATCHES:
        return batches
    try:
        from tqdm import tqdm
    except ImportError:
        return batches
    return tqdm(batches, desc="embedding corpus", unit="batch", file=sys.stderr)  # stderr: the instance log


def _onnx_encoder(model_dir: Path, settings: HandlerSettings, model: EmbeddingModel) -> Encoder:
    from onnx_encoder import load_onnx_encoder  # imports onnxruntime lazily; the torch path never loads it

    if model.device.type != "cpu" or model.dtype != torch.float32:
        raise ModelLoadError(f"{ENV_EMBEDDING_BACKEND}=onnxruntime runs float32 on the CPU, not {model.device} "
                             f"({str(model.dtype).removeprefix('torch.')}): unset it on a GPU, where PyTorch is "
                             "faster.")

    def load_eager() -> Any:
        return _load_transformer(model_dir, settings, torch.float32, attention="eager").eval()

    return load_onnx_encoder(model_dir, model.tokenizer, model.encoder, load_eager, model.fingerprint,
                             cache_dirs(model_dir, settings.cache_dir),
                             threads=max(1, torch.get_num_threads() // model.lanes))


def _max_length(layout: EmbeddingLayout, tokenizer: Any, transformer: Any) -> int:
    """sentence-transformers' rule: its max_seq_length, else the tokenizer's, capped by the positions."""
    length = layout.max_seq_length
    if length is None:
        tokenizer_max = getattr(tokenizer, "model_max_length", None)
        length = tokenizer_max if isinstance(tokenizer_max, int) and tokenizer_max > 0 else MAX_SEQ_LENGTH_CAP
        length = min(length, MAX_SEQ_LENGTH_CAP)
    positions = getattr(transformer.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        length = min(length, positions)
    return length
