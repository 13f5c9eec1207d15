"""What the sentence-transformers files in a model directory say about how to embed.

A checkpoint saved by sentence-transformers records its pooling (``modules.json`` -> the Pooling
module's ``config.json``), its truncation length (``sentence_bert_config.json``) and its named prompts
(``config_sentence_transformers.json``). Reading them here, without importing sentence-transformers
(which a serving container need not have), keeps our embeddings identical to ``SentenceTransformer``'s.
A bare transformers checkpoint has none of these files and gets mean pooling.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving_errors import ModelLoadError

logger = logging.getLogger(__name__)

DEFAULT_POOLING = "mean"
MAX_SEQ_LENGTH_CAP = 8192

# Legacy boolean flags (and the newer single ``pooling_mode`` names) mapped to our pooling names,
# in the order sentence-transformers checks them.
_LEGACY_FLAGS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_lasttoken", "last_token"),
)
_MODE_NAMES = {"cls": "cls", "mean": "mean", "lasttoken": "last_token"}


@dataclass(frozen=True)
class EmbeddingLayout:
    """Pooling, truncation and prompts as the model's files declare them (``None``: not declared)."""

    pooling: str = DEFAULT_POOLING
    include_prompt: bool = True
    max_seq_length: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None  # applied when a call names no prompt, as SentenceTransformer does

    @property
    def default_prompt(self) -> str | None:
        return self.prompts[self.default_prompt_name] if self.default_prompt_name else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}. Fix or remove the file and redeploy.") from exc


def _pooling_config_path(model_dir: Path) -> Path | None:
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return None
    modules = _read_json(modules_file)
    if not isinstance(modules, list):
        return None
    for module in modules:
        if isinstance(module, dict) and str(module.get("type", "")).endswith(".Pooling"):
            return model_dir / str(module.get("path", "")) / "config.json"
    return None


def _pooling_from_config(config: dict[str, Any], source: Path) -> str:
    mode = config.get("pooling_mode")
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if isinstance(mode, str):
        if mode in _MODE_NAMES:
            return _MODE_NAMES[mode]
        raise ModelLoadError(
            f"{source} asks for pooling_mode {mode!r}, which this handler does not implement: "
            "set LOCALMAKER_POOLING to mean, last_token or cls to override it."
        )
    if mode is not None:
        raise ModelLoadError(
            f"{source} combines several pooling modes ({mode!r}), which this handler does not implement: "
            "set LOCALMAKER_POOLING to mean, last_token or cls to override it."
        )
    active = [name for flag, name in _LEGACY_FLAGS if config.get(flag)]
    unsupported = [
        flag
        for flag in (
            "pooling_mode_max_tokens",
            "pooling_mode_mean_sqrt_len_tokens",
            "pooling_mode_weightedmean_tokens",
        )
        if config.get(flag)
    ]
    if unsupported or len(active) > 1:
        raise ModelLoadError(
            f"{source} enables {', '.join(unsupported + active)}, which this handler does not implement: "
            "set LOCALMAKER_POOLING to mean, last_token or cls to override it."
        )
    return active[0] if active else DEFAULT_POOLING


def _max_seq_length(model_dir: Path) -> int | None:
    path = model_dir / "sentence_bert_config.json"
    if not path.is_file():
        return None
    value = _read_json(path).get("max_seq_length")
    return value if isinstance(value, int) and value > 0 else None


def _prompts(model_dir: Path) -> tuple[dict[str, str], str | None]:
    """The named prompts, and the one applied when a call names none."""
    path = model_dir / "config_sentence_transformers.json"
    if not path.is_file():
        return {}, None
    settings = _read_json(path)
    declared = settings.get("prompts") or {}
    prompts = {str(name): str(text) for name, text in declared.items() if isinstance(text, str)} \
        if isinstance(declared, dict) else {}
    default = settings.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise ModelLoadError(f"{path} names default_prompt_name {default!r}, which is not among its prompts "
                             f"({', '.join(sorted(prompts)) or 'none'}): add it to prompts or remove it.")
    return prompts, default


def read_layout(model_dir: Path, pooling_override: str | None = None) -> EmbeddingLayout:
    """Collect the embedding layout of ``model_dir``; ``pooling_override`` (from the env) wins."""
    pooling, include_prompt = DEFAULT_POOLING, True
    config_path = _pooling_config_path(model_dir)
    if config_path is not None and config_path.is_file():
        config = _read_json(config_path)
        include_prompt = bool(config.get("include_prompt", True))
        if pooling_override is None:
            pooling = _pooling_from_config(config, config_path)
    if pooling_override is not None:
        pooling = pooling_override
    prompts, default_prompt_name = _prompts(model_dir)
    layout = EmbeddingLayout(
        pooling=pooling,
        include_prompt=include_prompt,
        max_seq_length=_max_seq_length(model_dir),
        prompts=prompts,
        default_prompt_name=default_prompt_name,
    )
    logger.info(
        "embedding layout: pooling=%s include_prompt=%s max_seq_length=%s prompts=%s default prompt=%s",
        layout.pooling,
        layout.include_prompt,
        layout.max_seq_length,
        sorted(layout.prompts) or "none",
        layout.default_prompt_name or "none",
    )
    return layout
