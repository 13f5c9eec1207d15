"""LoRA fine-tuning of a Stable Diffusion 1.x UNet, as a SageMaker training entry script.

``Estimator.fit()`` runs this file the way a SageMaker PyTorch training container does: a fresh
``python train_lora.py --key value ...`` with the training environment (``SM_CHANNEL_TRAINING``,
``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_OUTPUT_DIR``, ...). It must also run unchanged in a real
container where localmaker is not installed, so it is one self-contained file and uses localmaker
only optionally, to resolve named sources such as ``tiny-sd``.

The recipe is diffusers' text-to-image LoRA one: frozen VAE, text encoder and UNet; a peft LoRA adapter
on the UNet's attention projections; noise-prediction MSE on VAE latents; AdamW on the LoRA weights
only. The result is saved as ``pytorch_lora_weights.safetensors``, the file stock
``pipe.load_lora_weights(dir)`` and localmaker's serving code read, plus ``localmaker_base_model.json``
naming the base it was trained on, so the deploy side knows which pipeline to serve it with.

Everything that can be checked before a model loads (hyperparameters, the channel, every image and
caption) is checked first, so a wrong input fails in seconds with a message saying what to fix; that
message also goes to ``$SM_OUTPUT_DIR/failure``, which SageMaker reports as the job's FailureReason.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

logger = logging.getLogger(__name__)

PROGRESS_PREFIX = "[localmaker:progress]"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
BASE_MODEL_FILE = "localmaker_base_model.json"
METRICS_FILE = "training_metrics.json"
LOSS_CURVE_FILE = "loss_curve.png"
METADATA_FILE = "metadata.jsonl"
TARGET_MODULES = ("to_k", "to_q", "to_v", "to_out.0")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
EXIT_FAILED = 1
EXIT_INVALID = 2
FAILURE_REASON_LIMIT = 1024  # SageMaker's FailureReason holds at most 1024 characters
MAX_PROGRESS_LINES = 1000  # above this many steps, print every k-th step (and always the last)
# torch.manual_seed takes at most 64 bits; a larger seed would fail only after the base model loaded.
MAX_SEED = 2**64 - 1
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


class InvalidInputError(Exception):
    """The job's inputs are wrong (exit 2): the message says which one and how to fix it."""


class HyperparameterError(InvalidInputError):
    """A hyperparameter is unknown, missing, or out of range."""


class TrainingDataError(InvalidInputError):
    """The training channel is missing, empty, or holds an unreadable or uncaptioned image."""


class BaseModelError(InvalidInputError):
    """``base_model`` names nothing that can be loaded as a Stable Diffusion pipeline."""


# ---------------------------------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hyperparameters:
    base_model: str
    rank: int = 4
    learning_rate: float = 1e-4
    max_train_steps: int = 200
    train_batch_size: int = 1
    resolution: int = 512
    gradient_accumulation_steps: int = 1
    seed: int = 0
    mixed_precision: str | None = None  # None: bf16 (or fp16) on CUDA, "no" on the CPU
    center_crop: bool = True
    random_flip: bool = False
    max_grad_norm: float = 1.0


def _integer(name: str, raw: str, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise HyperparameterError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise HyperparameterError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise HyperparameterError(f"{name} must be at most {maximum}, got {value}")
    return value


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise HyperparameterError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise HyperparameterError(f"{name} must be a positive number, got {raw!r}")
    return value


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise HyperparameterError(f"{name} must be true or false, got {raw!r}")


def _resolution(name: str, raw: str) -> int:
    value = _integer(name, raw)
    if not 64 <= value <= 1024 or value % 8:
        raise HyperparameterError(f"{name} must be a multiple of 8 from 64 to 1024, got {value}")
    return value


def _mixed_precision(name: str, raw: str) -> str:
    if raw not in ("no", "fp16", "bf16"):
        raise HyperparameterError(f"{name} must be one of no, fp16, bf16, got {raw!r}")
    return raw


def _base_model(name: str, raw: str) -> str:
    if not raw.strip():
        raise HyperparameterError(f"{name} must name a Stable Diffusion pipeline, got an empty string")
    return raw.strip()


# Name -> converter from the command-line string; the names and defaults are the dataclass's.
_CONVERTERS: dict[str, Callable[[str, str], Any]] = {
    "base_model": _base_model,
    "rank": lambda n, r: _integer(n, r, 1),
    "learning_rate": _positive_float,
    "max_train_steps": lambda n, r: _integer(n, r, 1),
    "train_batch_size": lambda n, r: _integer(n, r, 1),
    "resolution": _resolution,
    "gradient_accumulation_steps": lambda n, r: _integer(n, r, 1),
    "seed": lambda n, r: _integer(n, r, 0, MAX_SEED),
    "mixed_precision": _mixed_precision,
    "center_crop": _boolean,
    "random_flip": _boolean,
    "max_grad_norm": _positive_float,
}


def _decode(raw: str) -> str:
    """The SageMaker SDK JSON-encodes values, so ``"tiny-sd"`` (quotes included) means ``tiny-sd``."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text


def _split_arguments(argv: list[str]) -> dict[str, str]:
    """``--key value`` and ``--key=value`` pairs, keys with ``-`` read as ``_``."""
    pairs: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or len(token) == 2:
            raise HyperparameterError(f"expected --name value pairs, got {token!r}")
        if "=" in token:
            key, value = token[2:].split("=", 1)
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            key, value = token[2:], argv[i + 1]
            i += 2
        else:
            raise HyperparameterError(f"hyperparameter {token} has no value")
        key = key.replace("-", "_")
        if key in pairs:
            raise HyperparameterError(f"hyperparameter {key} is given twice")
        pairs[key] = _decode(value)
    return pairs


def parse_hyperparameters(argv: list[str], sm_hps: str | None = None) -> Hyperparameters:
    """Validate every hyperparameter, failing on the first bad one with a message naming the fix.

    The SDK's own ``sagemaker_*`` keys are ignored. When no arguments are given, ``SM_HPS`` (the same
    values as JSON) is read instead, so the script also runs under launchers that only set the env.
    """
    pairs = _split_arguments(argv)
    if not pairs and sm_hps:
        try:
            loaded = json.loads(sm_hps)
        except ValueError as exc:
            raise HyperparameterError(f"SM_HPS is not valid JSON: {exc}") from None
        pairs = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in loaded.items()}
    pairs = {k: v for k, v in pairs.items() if not k.startswith("sagemaker_")}
    unknown = sorted(set(pairs) - set(_CONVERTERS))
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"this script accepts {', '.join(_CONVERTERS)}"
        )
    if "base_model" not in pairs:
        raise HyperparameterError(
            "base_model is required: a Stable Diffusion 1.x pipeline folder (model_index.json), a localmaker "
            "source such as tiny-sd or sd15, or a Hugging Face hub id"
        )
    return Hyperparameters(**{key: _CONVERTERS[key](key, value) for key, value in pairs.items()})


# ---------------------------------------------------------------------------------------------------
# The SageMaker training environment
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingEnvironment:
    """The ``SM_*`` variables this script reads, read once at start-up."""

    training_channel: Path
    base_channel: Path | None
    model_dir: Path
    output_data_dir: Path
    num_gpus: int | None
    current_host: str

    @classmethod
    def from_environ(cls, environ: dict[str, str]) -> TrainingEnvironment:
        output_dir = Path(environ.get("SM_OUTPUT_DIR", "output"))
        num_gpus = environ.get("SM_NUM_GPUS")
        base = environ.get("SM_CHANNEL_BASE")
        return cls(
            training_channel=_training_channel(environ),
            base_channel=Path(base) if base else None,
            model_dir=Path(environ.get("SM_MODEL_DIR", "model")),
            output_data_dir=Path(environ.get("SM_OUTPUT_DATA_DIR", str(output_dir / "data"))),
            num_gpus=int(num_gpus) if num_gpus and num_gpus.strip().isdigit() else None,
            current_host=environ.get("SM_CURRENT_HOST", "algo-1"),
        )


def _training_channel(environ: dict[str, str]) -> Path:
    """``SM_CHANNEL_TRAINING``, or the only channel other than ``base`` when it has another name."""
    if environ.get("SM_CHANNEL_TRAINING"):
        return Path(environ["SM_CHANNEL_TRAINING"])
    try:
        channels = [str(c) for c in json.loads(environ.get("SM_CHANNELS", "[]"))]
    except ValueError:
        channels = []
    others = [c for c in channels if c != "base" and environ.get(f"SM_CHANNEL_{c.upper()}")]
    if len(others) == 1:
        return Path(environ[f"SM_CHANNEL_{others[0].upper()}"])
    raise TrainingDataError(
        f"no training images: SM_CHANNEL_TRAINING is not set (channels: {channels or 'none'}). Pass the image "
        "folder as the 'training' channel, e.g. estimator.fit({'training': 's3://bucket/images/'})"
    )


def resolve_device(num_gpus: int | None) -> torch.device:
    """CUDA when the job's instance has GPUs (``SM_NUM_GPUS``) and torch sees one, else the CPU."""
    if num_gpus != 0 and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def resolve_precision(requested: str | None, device: torch.device) -> str:
    """The recipe's default is bf16 where the GPU has it, else fp16; the CPU trains in fp32."""
    if device.type != "cuda":
        if requested in ("fp16", "bf16"):
            raise HyperparameterError(
                f"mixed_precision={requested} needs a CUDA GPU, and this job runs on the CPU; pass "
                "--mixed_precision no (or leave it out) or use a GPU instance type"
            )
        return "no"
    bf16_ok = torch.cuda.is_bf16_supported()
    if requested == "bf16" and not bf16_ok:
        raise HyperparameterError("mixed_precision=bf16 is not supported by this GPU; use fp16 or no")
    if requested is None:
        return "bf16" if bf16_ok else "fp16"
    return requested


# ---------------------------------------------------------------------------------------------------
# Training data
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    image: Path
    caption: str


def _read_text(folder: Path, path: Path) -> str:
    """A caption file's text; one saved in a legacy encoding is an input error, not a traceback."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TrainingDataError(
            f"{path.relative_to(folder).as_posix()} in the training channel is not UTF-8 text (byte "
            f"{exc.object[exc.start]:#04x} at offset {exc.start}); save it as UTF-8"
        ) from None


def _read_metadata(folder: Path) -> dict[str, str]:
    """``metadata.jsonl`` as {relative file name: caption}; each line is checked as it is read."""
    path = folder / METADATA_FILE
    captions: dict[str, str] = {}
    if not path.is_file():
        return captions
    for number, line in enumerate(_read_text(folder, path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{METADATA_FILE} line {number}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise TrainingDataError(f"{where} is not valid JSON ({exc}); write one JSON object per line") from None
        if not isinstance(record, dict) or not isinstance(record.get("file_name"), str):
            raise TrainingDataError(f'{where} has no "file_name"; write {{"file_name": "a.png", "text": "..."}}')
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise TrainingDataError(f'{where} ({record["file_name"]}) has no "text" caption; add a non-empty "text"')
        name = record["file_name"]
        if not (folder / name).is_file():
            raise TrainingDataError(f"{where} names {name!r}, which is not in the training channel {folder}")
        captions[Path(name).as_posix()] = text.strip()
    return captions


def _caption_for(folder: Path, image: Path, metadata: dict[str, str]) -> str | None:
    relative = image.relative_to(folder).as_posix()
    if relative in metadata:
        return metadata[relative]
    sidecar = image.with_suffix(".txt")
    if sidecar.is_file():
        text = _read_text(folder, sidecar).strip()
        return text or None
    return None


def _check_readable(folder: Path, image: Path) -> None:
    try:
        with Image.open(image) as opened:
            opened.verify()
    except Exception as exc:
        raise TrainingDataError(
            f"{image.relative_to(folder)} in the training channel is not a readable image "
            f"({type(exc).__name__}: {exc}); replace or remove it"
        ) from None


def scan_training_data(folder: Path) -> list[Example]:
    """Every image in the channel with its caption, or the first reason the set cannot be used."""
    if not folder.is_dir():
        raise TrainingDataError(f"the training channel {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise TrainingDataError(f"the training channel {folder} is empty; upload images with captions to it")
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        seen = ", ".join(p.name for p in files[:5])
        raise TrainingDataError(
            f"the training channel {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); found {seen}"
        )
    metadata = _read_metadata(folder)
    examples, uncaptioned = [], []
    for image in images:
        _check_readable(folder, image)
        caption = _caption_for(folder, image, metadata)
        if caption is None:
            uncaptioned.append(image.relative_to(folder).as_posix())
        else:
            examples.append(Example(image, caption))
    if uncaptioned:
        first = uncaptioned[0]
        raise TrainingDataError(
            f"{len(uncaptioned)} image(s) have no caption: {', '.join(uncaptioned[:5])}. Add a line "
            f'{{"file_name": "{first}", "text": "..."}} to {METADATA_FILE}, or write the caption to '
            f"{Path(first).with_suffix('.txt').as_posix()}"
        )
    logger.info("training set: %d captioned images in %s", len(examples), folder)
    return examples


def load_pixels(path: Path, resolution: int, center_crop: bool, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """RGB, shorter side resized to ``resolution``, cropped square, scaled to [-1, 1], CHW."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    scale = resolution / min(image.size)
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    if center_crop:
        left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
    else:
        left = int(torch.randint(0, image.width - resolution + 1, (1,), generator=generator))
        top = int(torch.randint(0, image.height - resolution + 1, (1,), generator=generator))
    image = image.crop((left, top, left + resolution, top + resolution))
    if flip:
        image = ImageOps.mirror(image)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def batches(count: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Endless shuffled batches of example indices; an epoch's tail runs on into the next shuffle."""
    order: list[int] = []
    while True:
        while len(order) < batch_size:
            order += torch.randperm(count, generator=generator).tolist()
        yield order[:batch_size]
        order = order[batch_size:]


# ---------------------------------------------------------------------------------------------------
# Base model
# ---------------------------------------------------------------------------------------------------


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
    try:
        from localmaker.model.sources import resolve_source
    except ImportError:
        return spec
    try:
        return str(resolve_source(spec))
    except Exception as exc:
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


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------


@dataclass
class TrainingResult:
    losses: list[float]
    seconds: float
    device: str
    mixed_precision: str
    eval_loss_before: float
    eval_loss_after: float


EVAL_TIMESTEPS = 8
EVAL_SEED = 1234


def evaluation_loss(examples: list[Example], components: dict[str, Any], input_ids: torch.Tensor, resolution: int,
                    device: torch.device, weight_dtype: torch.dtype, batch_size: int) -> float:
    """The denoising loss on every training image at fixed timesteps and fixed noise.

    Each training step draws its own timesteps and noise, so its loss swings more than training moves
    it. This one number is computed the same way before and after training: if it falls, the adapter
    really fits the training set better.

    The images go through the VAE and UNet ``batch_size`` at a time, the batch training itself uses,
    so a set that trains within memory is also evaluated within it. Only the small latents and text
    states are kept for the whole set, and the noise is drawn for the whole set at once, so the result
    does not depend on ``batch_size``.
    """
    text_encoder, vae, unet, scheduler = (components[k] for k in ("text_encoder", "vae", "unet", "noise_scheduler"))
    generator = torch.Generator().manual_seed(EVAL_SEED)
    chunks = [slice(start, start + batch_size) for start in range(0, len(examples), batch_size)]
    was_training = unet.training
    unet.eval()
    with torch.no_grad():
        latent_parts, hidden_parts = [], []
        for chunk in chunks:
            pixels = torch.stack([load_pixels(e.image, resolution, True, False, generator) for e in examples[chunk]])
            encoded = vae.encode(pixels.to(device, dtype=weight_dtype)).latent_dist.mean
            latent_parts.append(encoded * vae.config.scaling_factor)
            hidden_parts.append(text_encoder(input_ids[chunk].to(device), return_dict=False)[0])
        latents, hidden = torch.cat(latent_parts), torch.cat(hidden_parts)
        steps = torch.linspace(0, scheduler.config.num_train_timesteps - 1, EVAL_TIMESTEPS + 2)[1:-1].long()
        total = 0.0
        for step in steps:
            noise = torch.randn(latents.shape, generator=generator).to(device, dtype=latents.dtype)
            timesteps = torch.full((len(examples),), int(step), device=device, dtype=torch.long)
            noisy = scheduler.add_noise(latents, noise, timesteps)
            target = noise if scheduler.config.prediction_type == "epsilon" else (
                scheduler.get_velocity(latents, noise, timesteps))
            for chunk in chunks:
                prediction = unet(noisy[chunk], timesteps[chunk], hidden[chunk], return_dict=False)[0]
                # Every image has the same number of elements, so weighting each chunk's mean by its
                # image count gives the mean over the whole set.
                chunk_loss = torch.nn.functional.mse_loss(prediction.float(), target[chunk].float())
                total += float(chunk_loss) * len(prediction) / len(examples)
    unet.train(was_training)
    return total / len(steps)


def progress_every(total: int) -> int:
    return max(1, math.ceil(total / MAX_PROGRESS_LINES))


def report_progress(step: int, total: int, loss: float) -> None:
    """The machine-readable line the control plane turns into a progress bar and metrics."""
    if step % progress_every(total) == 0 or step == total:
        sys.stdout.write(f"{PROGRESS_PREFIX} step={step} total={total} loss={loss:.6f}\n")
        sys.stdout.flush()


def _grad_scaler() -> Any:
    """fp16 needs loss scaling; ``torch.amp.GradScaler`` is torch >= 2.3, older containers have the cuda one."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def add_lora(unet: Any, rank: int) -> list[torch.nn.Parameter]:
    """Freeze the UNet, add the LoRA adapter, and return its (fp32) parameters, the only trained ones."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(TARGET_MODULES))
    unet.add_adapter(config)
    params = [p for p in unet.parameters() if p.requires_grad]
    for param in params:
        param.data = param.data.float()  # frozen weights may be half; the trained ones stay fp32
    return params


def train(hp: Hyperparameters, examples: list[Example], components: dict[str, Any], device: torch.device,
          precision: str) -> TrainingResult:
    """Run ``max_train_steps`` optimizer steps; randomness comes from CPU generators seeded with ``seed``."""
    torch.manual_seed(hp.seed)
    generator = torch.Generator().manual_seed(hp.seed)
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    tokenizer, text_encoder, vae, unet = (components[k] for k in ("tokenizer", "text_encoder", "vae", "unet"))
    scheduler = components["noise_scheduler"]
    for module in (vae, text_encoder, unet):
        module.requires_grad_(False).to(device)
        if weight_dtype != torch.float32:  # the frozen weights; the LoRA weights added below stay fp32
            module.to(dtype=weight_dtype)
    vae.eval()
    text_encoder.eval()
    params = add_lora(unet, hp.rank)
    unet.train()
    optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=1e-2, eps=1e-8)
    scaler = _grad_scaler() if precision == "fp16" else None
    input_ids = tokenizer([e.caption for e in examples], max_length=tokenizer.model_max_length,
                          padding="max_length", truncation=True, return_tensors="pt").input_ids
    prediction_type = scheduler.config.prediction_type
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"unsupported prediction_type {prediction_type!r}: expected epsilon or v_prediction")
    order = batches(len(examples), hp.train_batch_size, generator)
    eval_before = evaluation_loss(examples, components, input_ids, hp.resolution, device, weight_dtype,
                                  hp.train_batch_size)
    logger.info("training %d LoRA parameters (rank %d) for %d steps on %s, %s, batch %d x %d accumulation",
                sum(p.numel() for p in params), hp.rank, hp.max_train_steps, device, precision,
                hp.train_batch_size, hp.gradient_accumulation_steps)

    def micro_batch_loss(indices: list[int]) -> torch.Tensor:
        flips = [hp.random_flip and bool(torch.rand((), generator=generator) < 0.5) for _ in indices]
        pixels = torch.stack([load_pixels(examples[i].image, hp.resolution, hp.center_crop, f, generator)
                              for i, f in zip(indices, flips, strict=True)])
        with torch.no_grad():
            pixels = pixels.to(device, dtype=weight_dtype)
            latents = vae.encode(pixels).latent_dist.sample(generator=generator) * vae.config.scaling_factor
            hidden = text_encoder(input_ids[indices].to(device), return_dict=False)[0]
        noise = torch.randn(latents.shape, generator=generator).to(device, dtype=latents.dtype)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(indices),), generator=generator)
        timesteps = timesteps.long().to(device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = noise if prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
        with torch.autocast(device.type, dtype=weight_dtype, enabled=precision != "no"):
            prediction = unet(noisy, timesteps, hidden, return_dict=False)[0]
        return torch.nn.functional.mse_loss(prediction.float(), target.float(), reduction="mean")

    losses: list[float] = []
    started = time.perf_counter()
    log_every = max(1, hp.max_train_steps // 10)
    for step in range(1, hp.max_train_steps + 1):
        step_loss = 0.0
        for _ in range(hp.gradient_accumulation_steps):
            loss = micro_batch_loss(next(order)) / hp.gradient_accumulation_steps
            (scaler.scale(loss) if scaler else loss).backward()
            step_loss += float(loss.detach())
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"the loss became {step_loss} at step {step}; lower learning_rate "
                                     "or train with mixed_precision bf16 or no")
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
        report_progress(step, hp.max_train_steps, step_loss)
        if step == 1 or step % log_every == 0 or step == hp.max_train_steps:
            elapsed = time.perf_counter() - started
            logger.info("step %d/%d loss %.6f (%.2f s/step)", step, hp.max_train_steps, step_loss, elapsed / step)
    seconds = time.perf_counter() - started
    eval_after = evaluation_loss(examples, components, input_ids, hp.resolution, device, weight_dtype,
                                  hp.train_batch_size)
    logger.info("first loss %.6f, last loss %.6f, %d steps in %.1f s", losses[0], losses[-1], len(losses), seconds)
    logger.info("evaluation loss on the training set (fixed timesteps and noise): %.6f before, %.6f after",
                eval_before, eval_after)
    return TrainingResult(losses=losses, seconds=seconds, device=str(device), mixed_precision=precision,
                          eval_loss_before=eval_before, eval_loss_after=eval_after)


# ---------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------


def save_lora(unet: Any, model_dir: Path) -> Path:
    """``pytorch_lora_weights.safetensors`` in the layout ``pipe.load_lora_weights(dir)`` reads."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    layers = {name: tensor.detach().to("cpu", torch.float32).contiguous() for name, tensor in layers.items()}
    model_dir.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(str(model_dir), unet_lora_layers=layers, safe_serialization=True)
    return model_dir / LORA_WEIGHTS


def write_base_reference(model_dir: Path, hp: Hyperparameters) -> Path:
    """The base the LoRA belongs to travels with the artifact, so the deploy side serves the right one."""
    path = model_dir / BASE_MODEL_FILE
    reference = {
        "base_model": hp.base_model,
        "lora": {"rank": hp.rank, "alpha": hp.rank, "target_modules": list(TARGET_MODULES)},
        "resolution": hp.resolution,
    }
    path.write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")
    return path


def write_metrics(output_data_dir: Path, hp: Hyperparameters, result: TrainingResult, images: int) -> Path:
    output_data_dir.mkdir(parents=True, exist_ok=True)
    path = output_data_dir / METRICS_FILE
    metrics = {
        "steps": len(result.losses),
        "seconds": round(result.seconds, 3),
        "first_loss": result.losses[0],
        "last_loss": result.losses[-1],
        "losses": result.losses,
        "eval_loss_before": result.eval_loss_before,
        "eval_loss_after": result.eval_loss_after,
        "images": images,
        "device": result.device,
        "mixed_precision": result.mixed_precision,
        "hyperparameters": asdict(hp),
    }
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return path


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values: the trend under diffusion's noisy per-step loss."""
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    return [float((cumulative[i + 1] - cumulative[max(0, i + 1 - window)]) / min(window, i + 1))
            for i in range(len(values))]


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font: Any, anchor: str) -> None:
    """Text placed by its bounding box: Pillow's ``anchor`` needs a TrueType font, which an old Pillow's
    default font is not, and a plot must never fail a finished training job."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    dx = {"l": 0.0, "m": (right - left) / 2, "r": float(right - left)}[anchor[0]]
    dy = {"a": 0.0, "m": (bottom - top) / 2, "s": float(bottom - top)}[anchor[1]]
    draw.text((xy[0] - dx - left, xy[1] - dy - top), text, fill="black", font=font)


def draw_loss_curve(losses: list[float], path: Path, width: int = 640, height: int = 360) -> Path:
    """Loss per step and its moving average on labelled axes, with Pillow alone (no matplotlib)."""
    window = max(1, min(50, len(losses) // 10))
    trend = moving_average(losses, window)
    left, right, top, bottom = 70, 20, 36, 50
    low, high = min(losses), max(losses)
    pad = (high - low) * 0.05 or max(abs(high) * 0.05, 1e-3)
    low, high = low - pad, high + pad
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(i: int, value: float) -> tuple[float, float]:
        x = left + (i / max(1, len(losses) - 1)) * plot_w
        return x, top + (high - value) / (high - low) * plot_h

    for k in range(6):
        value = low + (high - low) * k / 5
        y = xy(0, value)[1]
        draw.line([(left, y), (width - right, y)], fill=(232, 232, 232))
        _label(draw, (left - 6, y), f"{value:.3g}", font, "rm")
        step = round(1 + (len(losses) - 1) * k / 5)
        x = xy(step - 1, low)[0]
        draw.line([(x, top + plot_h), (x, top + plot_h + 4)], fill="black")
        _label(draw, (x, top + plot_h + 6), str(step), font, "ma")
    draw.rectangle([left, top, width - right, top + plot_h], outline="black")
    if len(losses) > 1:
        draw.line([xy(i, v) for i, v in enumerate(losses)], fill=(150, 185, 230), width=1)
        draw.line([xy(i, v) for i, v in enumerate(trend)], fill=(200, 40, 40), width=2)
    else:
        draw.ellipse([*(c - 3 for c in xy(0, losses[0])), *(c + 3 for c in xy(0, losses[0]))], fill=(200, 40, 40))
    _label(draw, (left + plot_w / 2, height - 8), "step", font, "ms")
    label = Image.new("RGB", (40, 14), "white")
    _label(ImageDraw.Draw(label), (20, 7), "loss", font, "mm")
    image.paste(label.rotate(90, expand=True), (4, top + plot_h // 2 - 20))
    draw.text((left, 10), "LoRA training loss (MSE of the noise prediction)", fill="black", font=font)
    draw.line([(width - right - 190, 16), (width - right - 170, 16)], fill=(150, 185, 230), width=2)
    _label(draw, (width - right - 165, 16), "per step", font, "lm")
    draw.line([(width - right - 110, 16), (width - right - 90, 16)], fill=(200, 40, 40), width=2)
    _label(draw, (width - right - 85, 16), f"mean of {window}", font, "lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------


def run(argv: list[str], environ: dict[str, str]) -> None:
    """Validate everything cheap first, then load, train and write the outputs."""
    hp = parse_hyperparameters(argv, environ.get("SM_HPS"))
    env = TrainingEnvironment.from_environ(environ)
    device = resolve_device(env.num_gpus)
    precision = resolve_precision(hp.mixed_precision, device)
    examples = scan_training_data(env.training_channel)
    base = resolve_base_model(hp.base_model, env.base_channel)
    logger.info("host %s: LoRA on %s (%s), %s", env.current_host, hp.base_model, base, asdict(hp))
    components = load_components(base, hp.base_model)
    result = train(hp, examples, components, device, precision)
    weights = save_lora(components["unet"], env.model_dir)
    write_base_reference(env.model_dir, hp)
    write_metrics(env.output_data_dir, hp, result, len(examples))
    try:
        draw_loss_curve(result.losses, env.output_data_dir / LOSS_CURVE_FILE)
    except Exception:  # the model is saved: a plot must not fail the job
        logger.warning("could not draw %s", LOSS_CURVE_FILE, exc_info=True)
    logger.info("saved %s and %s; metrics and loss curve in %s", weights, BASE_MODEL_FILE, env.output_data_dir)


def failure_reason(exc: BaseException) -> str:
    """One paragraph, no traceback: the exception's type and message, as FailureReason shows it."""
    message = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        message += ". Lower train_batch_size or resolution, or use a GPU with more memory"
    return f"{type(exc).__name__}: {message}"[:FAILURE_REASON_LIMIT]


def write_failure(output_dir: str | None, reason: str) -> None:
    """``$SM_OUTPUT_DIR/failure``, the file the SageMaker training toolkit leaves for FailureReason."""
    if not output_dir:
        return
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "failure").write_text(reason + "\n", encoding="utf-8")
    except OSError:
        logger.exception("could not write the failure file in %s", output_dir)


def _print_help() -> None:
    defaults = {k: v for k, v in asdict(Hyperparameters(base_model="")).items() if k != "base_model"}
    defaults["mixed_precision"] = "bf16|fp16 on CUDA, no on the CPU"
    sys.stdout.write("usage: train_lora.py --base_model SOURCE [--name value ...]\nhyperparameters (defaults): "
                     + ", ".join(f"{k}={v}" for k, v in defaults.items()) + "\n")


def main(argv: list[str] | None = None) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        _print_help()
        return 0
    environ = dict(os.environ)
    try:
        run(args, environ)
    except InvalidInputError as exc:
        reason = failure_reason(exc)
        logger.error("%s", reason)
        write_failure(environ.get("SM_OUTPUT_DIR"), reason)
        return EXIT_INVALID
    except Exception as exc:
        logger.exception("training failed")
        write_failure(environ.get("SM_OUTPUT_DIR"), failure_reason(exc))
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
