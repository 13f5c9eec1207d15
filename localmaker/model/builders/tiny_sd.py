"""Build a tiny Stable Diffusion v1.5 look-alike, offline and deterministically.

Tests and the offline demo need a pipeline directory that goes through exactly the code path real
SD1.5 takes (``StableDiffusionPipeline.from_pretrained`` reading ``model_index.json`` and one folder
per component), but cannot download anything and must build in seconds on two cores. So the real
component classes get tiny seeded configs, as in diffusers' own pipeline tests, and the tokenizer is
a genuine CLIP BPE (lowercased, ``</w>`` word ends, CLIP's vocab layout) trained here on a few dozen
built-in prompts. The scheduler is SD1.5's PNDM config verbatim, so step counts and timesteps match
the real model. The VAE is a hand-set colour codec and the UNet gets a short seeded fit on smooth
colour fields (``tiny_sd_prior``), so its images are patches of colour rather than saturated noise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from localmaker.model.builders.tiny_sd_prior import apply_prior

logger = logging.getLogger(__name__)

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MAX_TOKENS = 77  # CLIP's context length; SD1.5's tokenizer and text encoder both use it
CROSS_ATTENTION_DIM = 32  # the text encoder's hidden size feeds the UNet's cross-attention
IMAGE_SIZE = 64  # the pipeline's native size: unet sample_size 16 x vae_scale_factor 4
VAE_SCALE_FACTOR = 4
_SAFETY_IMAGE_SIZE = 32
_SEED = 0
# The progress bar's label while tiny-sd is built (the first time a machine uses it).
BUILD_PROGRESS_LABEL = "building tiny-sd (first use only)"
_END_OF_WORD = "</w>"

# CLIP's pre-tokenizer split (as in transformers' CLIPTokenizer and OpenAI's simple_tokenizer).
_CLIP_SPLIT_REGEX = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

# SD1.5's scheduler/scheduler_config.json, field for field. PNDMScheduler takes no ``clip_sample``
# (the real file carries it anyway), so it is recorded in the config rather than passed to __init__.
SD15_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "clip_sample": False,
    "trained_betas": None,
}

SEED_PROMPTS: tuple[str, ...] = (
    "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k",
    "Futuristic city at night, neon lights, flying cars, cyberpunk, ultra detailed",
    "blurry, low quality, distorted, watermark, extra limbs",
)

# Training text: the demo prompts plus typical text-to-image prompts, so their words become whole
# tokens rather than letter soup (real CLIP knows them all; a 77-token limit should bite similarly).
TRAINING_TEXT: tuple[str, ...] = SEED_PROMPTS + (
    "A photo of an astronaut riding a horse on the moon",
    "A photograph of a cat sitting on a red chair",
    "A portrait of a woman with long hair, soft light, highly detailed",
    "An oil painting of a lighthouse at sunset, dramatic sky",
    "A watercolor painting of mountains and a quiet lake",
    "A castle on a hill surrounded by fog, fantasy art",
    "A cozy cabin in a snowy forest at dawn",
    "A bowl of fresh fruit on a wooden table, still life",
    "A dog running on the beach, golden hour, sharp focus",
    "A robot reading a book in a library, digital art",
    "A dragon flying over a medieval village, epic, cinematic lighting",
    "A small boat on a calm sea under a starry night sky",
    "A street market in the rain, reflections, vibrant colors",
    "A close up of a flower with drops of water, macro photography",
    "A futuristic car parked in front of a glass building",
    "A panda eating bamboo in the jungle, national geographic",
    "A city skyline at night with bright neon signs",
    "An ancient temple hidden in a green jungle",
    "A spaceship landing on a red desert planet",
    "A pencil sketch of an old man smiling",
    "A pixel art landscape with trees and a river",
    "A bright kitchen with white walls and plants",
    "A steampunk airship above the clouds, concept art",
    "A cute corgi wearing sunglasses, studio photo",
    "Trending on artstation, unreal engine, octane render, 4k",
    "Masterpiece, best quality, high resolution, intricate details",
    "Ugly, deformed, bad anatomy, bad hands, cropped, worst quality",
    "Lowres, jpeg artifacts, text, signature, username, noisy",
    "Muted tones, pastel colors, minimalist, clean background",
    "Warm color palette, soft shadows, depth of field",
    "A knight in shining armor holding a sword",
    "The quick brown fox jumps over the lazy dog.",
    "Two people walking through a field of sunflowers",
    "A train crossing a bridge over a deep valley",
    "An underwater scene with fish and coral reef",
    "A snowy mountain peak under a clear blue sky",
)


@contextmanager
def _seeded() -> Iterator[None]:
    """Seed torch for one component without disturbing the caller's RNG state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        yield


# ---------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte -> printable character table; its order is the start of CLIP's vocab."""
    byte_values = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    byte_values += list(range(ord("®"), ord("ÿ") + 1))
    chars = [chr(b) for b in byte_values]
    shifted = 0
    for byte in range(256):
        if byte not in byte_values:  # control and space bytes get a printable stand-in above 255
            byte_values.append(byte)
            chars.append(chr(256 + shifted))
            shifted += 1
    return dict(zip(byte_values, chars, strict=True))


def train_clip_merges(texts: tuple[str, ...] = TRAINING_TEXT) -> list[tuple[str, str]]:
    """Learn BPE merges over ``texts`` with CLIP's normaliser, pre-tokenizer and ``</w>`` suffix.

    Every ``<char></w>`` symbol is registered up front in a fixed order: the trainer otherwise numbers
    them in hash-map order, which changes merge tie-breaks from one process to the next.
    """
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE

    alphabet = list(bytes_to_unicode().values())
    tok = Tokenizer(BPE(continuing_subword_prefix="", end_of_word_suffix=_END_OF_WORD))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT_REGEX), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=100_000,  # no cap: learn every merge the text supports
        min_frequency=1,
        special_tokens=[c + _END_OF_WORD for c in alphabet],
        initial_alphabet=alphabet,
        continuing_subword_prefix="",
        end_of_word_suffix=_END_OF_WORD,
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [(a, b) for a, b in (m.split(" ") if isinstance(m, str) else m for m in merges)]


def clip_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocab layout: bytes, bytes + ``</w>``, one entry per merge result, then the specials.

    The specials come last, as in OpenAI's CLIP (49406/49407 there), so ``eos`` is the largest id.
    """
    tokens = list(bytes_to_unicode().values())
    tokens += [t + _END_OF_WORD for t in tokens]
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(tokens)}


def write_clip_vocab_files(dest: Path, merges: list[tuple[str, str]]) -> None:
    """Write CLIP's ``vocab.json`` and ``merges.txt``, the files SD1.5's ``tokenizer/`` folder ships.

    transformers 5 saves only ``tokenizer.json``; these two are what a container with transformers 4
    (the slow ``CLIPTokenizer``) reads, so they are written alongside it.
    """
    dest.mkdir(parents=True, exist_ok=True)
    vocab = json.dumps(clip_vocab(merges), ensure_ascii=False)
    (dest / "vocab.json").write_text(vocab + "\n", encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (dest / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_tokenizer(merges: list[tuple[str, str]]) -> Any:
    """The real ``CLIPTokenizer`` over the trained merges, configured as SD1.5's (77 tokens, eos pad)."""
    from transformers import CLIPTokenizer

    pairs: Any = merges  # the stubs say list[str]; the tokenizers BPE takes (left, right) pairs too
    return CLIPTokenizer(
        vocab=clip_vocab(merges),
        merges=pairs,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=MAX_TOKENS,
    )


# ---------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------


def build_unet() -> Any:
    """SD1.5's UNet shape (down: plain then cross-attention; up: the mirror), tiny widths."""
    from diffusers import UNet2DConditionModel

    # diffusers' lazy module confuses mypy about these classes, hence the ``Any`` annotations.
    with _seeded():
        unet: Any = UNet2DConditionModel(
            sample_size=IMAGE_SIZE // VAE_SCALE_FACTOR,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=CROSS_ATTENTION_DIM,
            attention_head_dim=8,
            norm_num_groups=32,
        )
    return unet.eval()


def build_vae() -> Any:
    """Three blocks, so ``vae_scale_factor`` is 4 (16×16 latents keep the UNet cheap on a CPU), with
    hand-set colour-codec weights (see colour_vae): latents decode to the colours they hold, so what
    a UNet or LoRA does to latents shows in the pixels."""
    from diffusers import AutoencoderKL

    from localmaker.model.builders.colour_vae import make_colour_codec

    with _seeded():  # construction draws random weights; keep the caller's RNG untouched
        vae: Any = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(32, 64, 64),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,  # groups of whole (x, -x, K, -K) tuples, which the codec needs
            sample_size=IMAGE_SIZE,
            # Latents are RGB values in [-1, 1], spread here nearer the unit variance SD's noise schedule
            # assumes (SD1.5's 0.18215 does the same); at 1.0 the prior fit gives noticeably noisier images.
            scaling_factor=2.5,
        )
    return make_colour_codec(vae).eval()


def build_text_encoder(tokenizer: Any) -> Any:
    """A ``CLIPTextModel`` whose vocab and special ids are the tokenizer's, with SD1.5's quick_gelu."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=CROSS_ATTENTION_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=CROSS_ATTENTION_DIM,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with _seeded():
        return CLIPTextModel(config).eval()


# tiny-sd's UNet predicts velocity, as SD2.x's does, where SD1.5's predicts noise. An epsilon UNet this small
# and this briefly fitted is biased by a few hundredths at high noise, which the sampler multiplies by
# about 15 into the image: every picture came out as the starting noise, speckled. Velocity keeps those
# errors small at every noise level (measured in docs/reliability.md). Pipelines, schedulers and
# train_lora.py all read the type from this config, as they do for SD2.x.
TINY_SD_PREDICTION_TYPE = "v_prediction"


def build_scheduler() -> Any:
    """SD1.5's PNDM scheduler, with its config file matching the real one key for key but for
    ``prediction_type`` (``TINY_SD_PREDICTION_TYPE``)."""
    from diffusers import PNDMScheduler

    config = {**SD15_SCHEDULER_CONFIG, "prediction_type": TINY_SD_PREDICTION_TYPE}
    clip_sample = config.pop("clip_sample")
    scheduler: Any = PNDMScheduler(**config)
    scheduler.register_to_config(clip_sample=clip_sample)
    return scheduler


def build_safety_checker() -> tuple[Any, Any]:
    """A tiny real ``StableDiffusionSafetyChecker`` and the ``CLIPImageProcessor`` that feeds it."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "max_position_embeddings": MAX_TOKENS,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "image_size": _SAFETY_IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=32,
    )
    with _seeded():
        checker = StableDiffusionSafetyChecker(config).eval()
    processor = CLIPImageProcessor(
        size={"shortest_edge": _SAFETY_IMAGE_SIZE},
        crop_size={"height": _SAFETY_IMAGE_SIZE, "width": _SAFETY_IMAGE_SIZE},
    )
    return checker, processor


def build_tiny_sd(dest: Path, *, with_safety_checker: bool = False) -> Path:
    """Write the tiny SD1.5-layout pipeline into ``dest`` (created if missing) and return it.

    Deterministic on a given machine: byte-identical weights on every build (the UNet's short prior
    fit is seeded). Safetensors only, as the real repo serves.
    """
    from localmaker.logging_setup import progress_bar, quiet_model_libraries
    from localmaker.model.builders import tiny_sd_prior

    # The first build takes about 90 s on two cores, nearly all of it the UNet's prior fit: a user
    # waiting on Model("tiny-sd") or `localmaker demo` sees that on stderr rather than a silent pause.
    steps = tiny_sd_prior.PRIOR_STEPS
    with quiet_model_libraries(), progress_bar(total=steps, unit="step", leave=True,
                                               desc=BUILD_PROGRESS_LABEL) as bar:
        return _build(Path(dest), with_safety_checker, steps, on_step=lambda step: bar.update(step - bar.n))


def _build(dest: Path, with_safety_checker: bool, prior_steps: int, on_step: Callable[[int], None]) -> Path:
    from diffusers import StableDiffusionPipeline

    dest.mkdir(parents=True, exist_ok=True)
    merges = train_clip_merges()
    tokenizer = build_tokenizer(merges)
    safety_checker, feature_extractor = build_safety_checker() if with_safety_checker else (None, None)
    pipe: Any = StableDiffusionPipeline(
        vae=build_vae(),
        text_encoder=build_text_encoder(tokenizer),
        tokenizer=tokenizer,
        unet=build_unet(),
        scheduler=build_scheduler(),
        safety_checker=safety_checker,
        feature_extractor=feature_extractor,
        requires_safety_checker=with_safety_checker,
    )
    if feature_extractor is not None:
        # Without torchvision, transformers 5 hands back CLIPImageProcessorPil, a class transformers 4
        # lacks; record the class SD1.5 names so the artifact loads in a real container too.
        pipe.register_to_config(feature_extractor=("transformers", "CLIPImageProcessor"))
    with _seeded():
        apply_prior(pipe.unet, pipe.vae, pipe.text_encoder, tokenizer, pipe.scheduler.config, TRAINING_TEXT,
                  size=IMAGE_SIZE, steps=prior_steps, on_step=on_step)
    pipe.save_pretrained(dest, safe_serialization=True)
    write_clip_vocab_files(dest / "tokenizer", merges)
    logger.info("built tiny Stable Diffusion pipeline in %s", dest)
    return dest
