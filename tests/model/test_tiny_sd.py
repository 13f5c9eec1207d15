"""The tiny SD1.5 pipeline loads and runs like the real one, builds deterministically, and 'sd15'
finds real weights only in the local Hugging Face cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from localmaker.errors import ArtifactError
from localmaker.model.builders.tiny_sd import IMAGE_SIZE, SEED_PROMPTS, build_tiny_sd
from localmaker.model.integrity import sha256_file
from localmaker.model.sources import SD15_HUB_IDS, TINY_SD_DIRNAME, resolve_source

# OpenAI CLIP's pre-tokenizer split, restated here so the reference BPE below is independent.
CLIP_WORDS = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
UNSEEN_PROMPT = "A quokka playing the xylophone, Zebra-striped wallpaper!!"


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _reference_clip_ids(tokenizer_dir: Path, text: str) -> list[int]:
    """OpenAI CLIP's ``simple_tokenizer`` BPE, reading only vocab.json and merges.txt.

    transformers 5 has one CLIPTokenizer (the tokenizers-backed one), so this stands in for the slow
    Python tokenizer that transformers 4 and SD1.5 users run.
    """
    import regex
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    lines = (tokenizer_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#version")
    ranks = {tuple(line.split()): rank for rank, line in enumerate(lines[1:]) if line}
    byte_encoder = bytes_to_unicode()
    ids = [vocab["<|startoftext|>"]]
    for word in regex.findall(CLIP_WORDS, " ".join(text.split()).lower()):
        chars = "".join(byte_encoder[b] for b in word.encode("utf-8"))
        symbols = [*chars[:-1], chars[-1] + "</w>"]
        while len(symbols) > 1:
            best = min(zip(symbols, symbols[1:], strict=False), key=lambda p: ranks.get(p, len(ranks)))
            if best not in ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        ids += [vocab[s] for s in symbols]
    return ids + [vocab["<|endoftext|>"]]


def test_built_under_localmaker_home_as_safetensors(tiny_sd_dir: Path, localmaker_home: Path) -> None:
    assert tiny_sd_dir == localmaker_home / "sources" / TINY_SD_DIRNAME
    assert resolve_source("tiny-sd") == tiny_sd_dir  # reused, not rebuilt
    for weights in ("unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        assert (tiny_sd_dir / f"{weights}.safetensors").is_file(), weights
    pickles = [p for p in _all_files(tiny_sd_dir) if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}]
    assert pickles == []
    # SD1.5's tokenizer folder layout: the files transformers 4's slow CLIPTokenizer reads.
    tokenizer_files = {p.name for p in (tiny_sd_dir / "tokenizer").iterdir()}
    assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= tokenizer_files


def test_model_index_names_the_real_classes(tiny_sd_dir: Path) -> None:
    index = json.loads((tiny_sd_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert index["scheduler"] == ["diffusers", "PNDMScheduler"]
    assert index["safety_checker"] == [None, None] and index["feature_extractor"] == [None, None]
    assert index["requires_safety_checker"] is False


def test_scheduler_config_is_sd15s_with_velocity_prediction(tiny_sd_dir: Path) -> None:
    config = json.loads((tiny_sd_dir / "scheduler" / "scheduler_config.json").read_text())
    expected = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "skip_prk_steps": True,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "v_prediction",  # SD1.5 has epsilon; see TINY_SD_PREDICTION_TYPE for why
        "clip_sample": False,
    }
    assert {key: config.get(key) for key in expected} == expected


def test_build_is_deterministic_and_keeps_the_callers_rng(tiny_sd_dir: Path, tmp_path: Path) -> None:
    import torch

    torch.manual_seed(1234)
    before = torch.get_rng_state()
    again = build_tiny_sd(tmp_path / "again")
    assert torch.equal(torch.get_rng_state(), before)
    built = [p.relative_to(tiny_sd_dir) for p in _all_files(tiny_sd_dir)]
    assert built == [p.relative_to(again) for p in _all_files(again)]
    unet = Path("unet/diffusion_pytorch_model.safetensors")
    assert sha256_file(again / unet) == sha256_file(tiny_sd_dir / unet)
    for name in built:
        assert sha256_file(again / name) == sha256_file(tiny_sd_dir / name), name


def test_bpe_training_is_the_same_in_a_fresh_process() -> None:
    """The trainer numbers symbols in hash-map order unless told otherwise, which varies per process."""
    import hashlib
    import subprocess
    import sys

    from localmaker.model.builders.tiny_sd import train_clip_merges

    script = (
        "import hashlib, json; from localmaker.model.builders.tiny_sd import train_clip_merges; "
        "print(hashlib.sha256(json.dumps(train_clip_merges()).encode()).hexdigest())"
    )
    here = hashlib.sha256(json.dumps(train_clip_merges()).encode()).hexdigest()
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
        assert run.stdout.strip() == here


def test_pipeline_loads_and_generates_a_64px_image(tiny_sd_dir: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir)
    assert type(pipe.unet) is UNet2DConditionModel and type(pipe.vae) is AutoencoderKL
    assert type(pipe.text_encoder) is CLIPTextModel and type(pipe.tokenizer) is CLIPTokenizer
    assert type(pipe.scheduler) is PNDMScheduler and pipe.safety_checker is None
    assert pipe.vae_scale_factor == 4 and pipe.unet.config.sample_size * pipe.vae_scale_factor == IMAGE_SIZE
    assert pipe.text_encoder.config.hidden_size == pipe.unet.config.cross_attention_dim
    assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer)
    assert pipe.text_encoder.config.eos_token_id == pipe.tokenizer.eos_token_id

    out = pipe(
        SEED_PROMPTS[0],
        negative_prompt=SEED_PROMPTS[2],
        num_inference_steps=2,
        output_type="pil",
        generator=torch.Generator().manual_seed(0),
    )
    (image,) = out.images
    assert isinstance(image, Image.Image)
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE) and image.mode == "RGB"
    assert out.nsfw_content_detected is None  # no safety checker, so nothing was checked


def test_tokenizer_is_a_real_clip_bpe(tiny_sd_dir: Path, tmp_path: Path) -> None:
    import regex
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    tokenizer_dir = tiny_sd_dir / "tokenizer"
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    fast = CLIPTokenizerFast.from_pretrained(tokenizer_dir)
    # SD1.5's folder has no tokenizer.json: load from vocab.json + merges.txt alone, too.
    files_only = tmp_path / "tokenizer"
    files_only.mkdir()
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, files_only / name)
    from_files = CLIPTokenizer.from_pretrained(files_only)

    assert tokenizer.model_max_length == 77 and tokenizer.pad_token == "<|endoftext|>"
    # CLIP's vocab layout puts the two specials last.
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (len(tokenizer) - 2, len(tokenizer) - 1)
    for prompt in (*SEED_PROMPTS, UNSEEN_PROMPT):
        ids = tokenizer(prompt)["input_ids"]
        assert fast(prompt)["input_ids"] == ids, prompt
        assert from_files(prompt)["input_ids"] == ids, prompt
        assert _reference_clip_ids(tokenizer_dir, prompt) == ids, prompt
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert tokenizer.eos_token_id not in ids[1:-1]  # nothing fell back to the unk (= eos) token
        decoded = tokenizer.decode(ids, skip_special_tokens=True)
        assert decoded.replace(" ", "") == prompt.lower().replace(" ", ""), prompt
    for prompt in SEED_PROMPTS:  # trained on them: every CLIP word is one token
        tokens = tokenizer.convert_ids_to_tokens(tokenizer(prompt)["input_ids"][1:-1])
        assert tokens == [w + "</w>" for w in regex.findall(CLIP_WORDS, prompt.lower())], prompt
    padded = tokenizer(SEED_PROMPTS[1], padding="max_length", max_length=77, truncation=True)["input_ids"]
    assert len(padded) == 77 and padded[-1] == tokenizer.pad_token_id == tokenizer.eos_token_id


def test_safety_checker_variant_loads_with_a_checker(tmp_path: Path) -> None:
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    built = build_tiny_sd(tmp_path / "sd", with_safety_checker=True)
    index = json.loads((built / "model_index.json").read_text())
    assert index["safety_checker"] == ["stable_diffusion", "StableDiffusionSafetyChecker"]
    assert index["feature_extractor"] == ["transformers", "CLIPImageProcessor"]  # the class transformers 4 has
    assert index["requires_safety_checker"] is True
    assert (built / "safety_checker" / "model.safetensors").is_file()

    pipe = StableDiffusionPipeline.from_pretrained(built)
    assert type(pipe.safety_checker) is StableDiffusionSafetyChecker
    assert pipe.feature_extractor is not None
    out = pipe("a cat", num_inference_steps=2, output_type="pil", generator=torch.Generator().manual_seed(0))
    assert out.images[0].size == (IMAGE_SIZE, IMAGE_SIZE)
    assert out.nsfw_content_detected is not None and len(out.nsfw_content_detected) == 1


def _fake_cache_snapshot(cache: Path, repo_id: str, content: Path) -> Path:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "1" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    shutil.copytree(content, snapshot)
    return snapshot


def test_sd15_uncached_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "empty-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(ArtifactError) as info:
        resolve_source("sd15")
    message = str(info.value)
    assert f"hf download {SD15_HUB_IDS[0]} --include" in message
    assert "*/diffusion_pytorch_model.safetensors" in message
    assert all(repo_id in message for repo_id in SD15_HUB_IDS)
    assert str(cache) in message and "local directory" in message


def test_sd15_resolves_from_a_cached_snapshot(
    tiny_sd_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    snapshot = _fake_cache_snapshot(cache, SD15_HUB_IDS[0], tiny_sd_dir)
    assert resolve_source("sd15") == snapshot


def test_the_prior_fit_itself_is_deterministic_whatever_the_thread_count() -> None:
    """Builds in one process reuse the first fit, so check the fitting procedure on its own, short."""
    import torch

    from localmaker.model.builders.tiny_sd import (
        TRAINING_TEXT,
        build_scheduler,
        build_text_encoder,
        build_tokenizer,
        build_unet,
        build_vae,
        train_clip_merges,
    )
    from localmaker.model.builders.tiny_sd_prior import fit_prior

    tokenizer = build_tokenizer(train_clip_merges())
    text_encoder, vae, config = build_text_encoder(tokenizer), build_vae(), build_scheduler().config
    fitted = []
    for threads in (1, 2):
        unet = build_unet()
        torch.set_num_threads(threads)
        fit_prior(unet, vae, text_encoder, tokenizer, config, TRAINING_TEXT, size=64, steps=3)
        fitted.append(unet.state_dict())
    assert all(torch.equal(fitted[0][name], fitted[1][name]) for name in fitted[0])
    assert not torch.equal(fitted[0]["conv_out.weight"], build_unet().state_dict()["conv_out.weight"])


def test_captions_tint_their_fields_towards_the_colours_they_name() -> None:
    """The prior's fields lean to the colours a caption names (what guidance then amplifies); the empty
    caption's rows (NaN palettes) stay as drawn, and a caption naming no colour gets a stable hue of its own."""
    import torch

    from localmaker.model.builders.tiny_sd_prior import caption_palette, captioned_fields

    assert torch.allclose(caption_palette("a RED car"), torch.tensor([0.9, 0.1, 0.1]))
    assert torch.allclose(caption_palette("red and blue"), torch.tensor([0.525, 0.2, 0.525]))
    assert torch.equal(caption_palette("a bowl of soup"), caption_palette("a bowl of soup"))
    assert not torch.equal(caption_palette("a bowl of soup"), caption_palette("a quiet harbour"))

    palettes = torch.stack([caption_palette("a red car"), torch.full((3,), float("nan"))])
    tinted = captioned_fields(palettes, 16, torch.Generator().manual_seed(0))
    untinted = captioned_fields(torch.full((2, 3), float("nan")), 16, torch.Generator().manual_seed(0))
    red = (tinted[0] + 1) / 2
    assert red[0].mean() > 0.7 and red[1].mean() < 0.3 and red[2].mean() < 0.3
    assert torch.equal(tinted[1], untinted[1]) and not torch.equal(tinted[0], untinted[0])
