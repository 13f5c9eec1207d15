"""Stable Diffusion v1.5-sized timings through localmaker's own handler, against stock diffusers.

Weights cannot be downloaded here, so the pipeline is the real SD1.5 architecture (UNet, VAE, CLIP
ViT-L/14 text encoder) with random weights: compute per step is the same as the real model's. Every
number printed is a ratio or a time measured side by side in this one run, on this one card.

Run on a CUDA machine:  python benchmarks/sd15_gpu.py [--steps 30] [--size 512] [--compile]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=512, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)


def build_sd15_sized(dest: Path) -> Path:
    """Random-weight SD1.5 architecture saved as a diffusers directory (safetensors)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from localmaker.model.sources import resolve_source

    tokenizer = CLIPTokenizer.from_pretrained(resolve_source("tiny-sd") / "tokenizer")
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, set_alpha_to_one=False,
                              steps_offset=1)
    pipe = StableDiffusionPipeline(vae=AutoencoderKL(**SD15_VAE), text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=UNet2DConditionModel(**SD15_UNET), scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(dest, safe_serialization=True)
    return dest


def load_handler():
    code_dir = REPO / "localmaker" / "inference"
    sys.path.insert(0, str(code_dir))
    spec = importlib.util.spec_from_file_location("bench_inference", code_dir / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def handler_seconds(handler, model, request: dict, repeats: int) -> tuple[float, dict]:
    body = json.dumps(request).encode()
    times, answer = [], {}
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        data = handler.input_fn(body, "application/json")
        prediction = handler.predict_fn(data, model)
        payload, _ = handler.output_fn(prediction, "application/json")
        times.append(time.perf_counter() - start)
        answer = json.loads(payload)
    return statistics.median(times), answer


def stock_seconds(model_dir: Path, dtype: torch.dtype, request: dict, repeats: int) -> float:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model_dir, dtype=dtype).to("cuda")
    p = request["parameters"]
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        pipe(request["inputs"], negative_prompt=p.get("negative_prompt"), guidance_scale=p["guidance_scale"],
             num_inference_steps=p["num_inference_steps"], height=p["height"], width=p["width"],
             num_images_per_prompt=p.get("num_images_per_prompt", 1),
             generator=torch.Generator("cpu").manual_seed(p["seed"]))
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    del pipe
    torch.cuda.empty_cache()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time LOCALMAKER_TORCH_COMPILE=1")
    args = parser.parse_args()
    assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    request = {"inputs": "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k",
               "parameters": {"negative_prompt": "blurry, low quality, distorted, watermark", "guidance_scale": 7.5,
                              "num_inference_steps": args.steps, "seed": 42, "height": args.size, "width": args.size}}
    batch4 = {**request, "parameters": {**request["parameters"], "num_images_per_prompt": 4}}
    print(f"card: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        model_dir = build_sd15_sized(Path(scratch) / "sd15-random")
        print(f"built the SD1.5-sized random-weight pipeline in {time.perf_counter() - started:.1f}s")
        handler = load_handler()
        rows = []
        for label, env in [("fp16 (default)", {}), ("fp32", {"LOCALMAKER_DTYPE": "float32"}),
                           *([("fp16 + torch.compile", {"LOCALMAKER_TORCH_COMPILE": "1"})] if args.compile else [])]:
            os.environ.pop("LOCALMAKER_DTYPE", None)
            os.environ.pop("LOCALMAKER_TORCH_COMPILE", None)
            os.environ.update({"LOCALMAKER_DEVICE": "cuda:0", **env})
            started = time.perf_counter()
            model = handler.model_fn(str(model_dir))
            load_s = time.perf_counter() - started
            one, answer = handler_seconds(handler, model, request, args.repeats)
            four, _ = handler_seconds(handler, model, batch4, args.repeats)
            rows.append((label, load_s, one, answer["timings"]["per_step_ms"], 4 / four))
            del model
            torch.cuda.empty_cache()
        dtype = torch.float16
        stock = stock_seconds(model_dir, dtype, request, args.repeats)
    print(f"\n{args.size}x{args.size}, {args.steps} steps, CFG, median of {args.repeats}:")
    print("| path | model_fn s | 1 image s | ms/step | images/s at batch 4 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, load_s, one, per_step, throughput in rows:
        print(f"| localmaker handler, {label} | {load_s:.1f} | {one:.3f} | {per_step:.1f} | {throughput:.2f} |")
    print(f"| stock diffusers, fp16, no handler | - | {stock:.3f} | {1000 * stock / args.steps:.1f} | - |")
    print(f"\nratio handler fp16 / stock fp16 (1 image): {rows[0][2] / stock:.3f}")
    print(f"ratio fp32 / fp16 (1 image): {rows[1][2] / rows[0][2]:.2f}")
    if args.compile:
        print(f"ratio compiled / eager fp16 (1 image): {rows[2][2] / rows[0][2]:.3f}")


if __name__ == "__main__":
    main()
