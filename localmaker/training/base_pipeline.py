"""Where the base Stable Diffusion pipeline comes from, and loading its components.

The base is the ``base`` channel, a local folder, one of localmaker's named sources (such as ``tiny-sd``)
where localmaker is installed, or a Hugging Face hub id. The script never imports localmaker: a real
training container has none. Where it is installed, its resolver runs in a child process
(``python -m localmaker.model SPEC``), which prints the resolved folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from training_errors import BaseModelError

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
LOCALMAKER_RESOLVER = "localmaker.model"


class UnresolvedSourceError(Exception):
    """localmaker's resolver could not resolve a spec; the message is the reason it gave."""


def resolve_with_localmaker(spec: str) -> str:
    """The folder localmaker resolves ``spec`` to, from its resolver run in a child process.

    The resolver prints only the folder on stdout; on failure it exits non-zero with the reason as the
    last line of stderr (lines before it may be warnings).
    """
    result = subprocess.run([sys.executable, "-m", LOCALMAKER_RESOLVER, spec], capture_output=True,
                            encoding="utf-8", errors="replace", check=False,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    printed = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode == 0 and printed:
        return printed[-1]
    complaints = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    if complaints:
        raise UnresolvedSourceError(complaints[-1])
    raise UnresolvedSourceError(f"localmaker's resolver exited with status {result.returncode} and no message")


def resolve_base_model(spec: str, base_channel: Path | None) -> str:
    """Where to load the base pipeline from: the ``base`` channel, a local folder, a localmaker
    source (when localmaker is installed), else ``spec`` as a hub id, tried when the models load."""
    if base_channel is not None:
        if not (base_channel / "model_index.json").is_file():
            raise BaseModelError(f"the 'base' channel {base_channel} holds no model_index.json; upload a "
                                 "diffusers StableDiffusionPipeline folder (pipe.save_pretrained) to it")
        logger.info("base model from the 'base' channel: %s", base_channel)
        return str(base_channel)
    if spec.startswith("s3://"):
        raise BaseModelError(f"base_model {spec!r} is an S3 location; pass it as the 'base' channel instead, "
                             "e.g. estimator.fit({'training': ..., 'base': '" + spec + "'})")
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path)
    if importlib.util.find_spec("localmaker") is None:
        return spec
    try:
        return resolve_with_localmaker(spec)
    except UnresolvedSourceError as exc:
        if not _HUB_ID.fullmatch(spec):
            raise BaseModelError(f"cannot resolve base_model {spec!r}: {exc}") from None
        logger.info("localmaker could not resolve %r (%s); trying it as a Hugging Face hub id", spec, exc)
        return spec


def load_components(base: str, spec: str) -> dict[str, Any]:
    """Tokenizer, text encoder, VAE, UNet and a DDPM noise scheduler, each from its subfolder."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        return {
            "tokenizer": CLIPTokenizer.from_pretrained(base, subfolder="tokenizer"),
            "text_encoder": CLIPTextModel.from_pretrained(base, subfolder="text_encoder"),
            "vae": AutoencoderKL.from_pretrained(base, subfolder="vae"),
            "unet": UNet2DConditionModel.from_pretrained(base, subfolder="unet"),
            "noise_scheduler": DDPMScheduler.from_pretrained(base, subfolder="scheduler"),
        }
    except (OSError, ValueError) as exc:
        offline = " (HF_HUB_OFFLINE=1 forbids downloads)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise BaseModelError(
            f"cannot load base_model {spec!r} as a Stable Diffusion pipeline from {base!r}{offline}: "
            f"{type(exc).__name__}: {str(exc).rstrip('. ')}. Pass a local pipeline folder (model_index.json "
            "with tokenizer, text_encoder, vae, unet, scheduler), attach it as the 'base' channel, or a reachable "
            "hub id"
        ) from None
