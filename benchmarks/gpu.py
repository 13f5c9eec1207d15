"""GPU: SD1.5-sized latency and concurrent throughput, and Qwen3-0.6B-sized embedding tokens/s, each
against stock diffusers or transformers in the same run, on the same card.

Weights cannot be downloaded, so both models are the real architectures with random weights: the compute
is the real models'. Every figure is measured here, side by side; the last line is the headline ratio.

    python -m benchmarks.gpu [--steps 30] [--size 512] [--clients 8] [--requests 3] [--texts 2048]
    python -m benchmarks.gpu --smoke    # tiny models on the CPU: exercises every path, measures nothing
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.sd15_gpu import build_sd15_sized, load_handler
from localmaker.spec.names import PLACEHOLDER_ROLE

ROLE = PLACEHOLDER_ROLE
PROMPT = "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k"
NEGATIVE = "blurry, low quality, distorted, watermark"
QWEN3_06B = dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                 intermediate_size=3072, max_position_embeddings=8192)
WORDS = ["model", "endpoint", "latency", "batch", "token", "padding", "vector", "search", "query", "document",
         "image", "prompt", "guidance", "scheduler", "seed", "deploy", "container", "instance", "region", "bucket"]


@dataclass(frozen=True)
class Setup:
    device: str
    smoke: bool
    steps: int
    size: int

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()


def _request(setup: Setup, seed: int) -> dict[str, Any]:
    return {"inputs": PROMPT, "parameters": {"negative_prompt": NEGATIVE, "guidance_scale": 7.5, "seed": seed,
                                             "num_inference_steps": setup.steps, "height": setup.size,
                                             "width": setup.size}}


def _median_seconds(setup: Setup, run: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        setup.sync()
        started = time.perf_counter()
        run()
        setup.sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# -- Stable Diffusion ---------------------------------------------------------------------------------

def sd_latency(setup: Setup, model_dir: Path, repeats: int) -> tuple[float, float]:
    """Seconds for one image: localmaker's handler (its defaults for the device) and a stock pipeline call."""
    ours = _handler_seconds(setup, model_dir, repeats)
    if setup.device.startswith("cuda"):
        torch.cuda.empty_cache()  # the handler's pipeline is gone: the stock one gets the whole card
    return ours, _stock_seconds(setup, model_dir, repeats)


def _handler_seconds(setup: Setup, model_dir: Path, repeats: int) -> float:
    handler = load_handler()
    os.environ["LOCALMAKER_DEVICE"] = setup.device
    model = handler.model_fn(str(model_dir))
    body = json.dumps(_request(setup, 42)).encode()

    def through_handler() -> None:
        handler.output_fn(handler.predict_fn(handler.input_fn(body, "application/json"), model), "application/json")

    through_handler()  # warm-up: first CUDA kernels, the allocator's pools
    return _median_seconds(setup, through_handler, repeats)


def _stock_seconds(setup: Setup, model_dir: Path, repeats: int) -> float:
    from diffusers import StableDiffusionPipeline

    dtype = torch.float16 if setup.device.startswith("cuda") else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), torch_dtype=dtype).to(setup.device)
    pipe.set_progress_bar_config(disable=True)

    def stock() -> None:
        pipe(PROMPT, negative_prompt=NEGATIVE, guidance_scale=7.5, num_inference_steps=setup.steps,
             height=setup.size, width=setup.size, generator=torch.Generator("cpu").manual_seed(42))

    stock()
    return _median_seconds(setup, stock, repeats)


def sd_concurrent_throughput(setup: Setup, model_dir: Path, clients: int, requests_each: int) -> tuple[float, int]:
    """Images/s of a real endpoint with ``clients`` concurrent callers, and the largest joint call it made."""
    from localmaker.deploy import Model, Session
    from localmaker.deserializers import JSONDeserializer
    from localmaker.serializers import JSONSerializer

    instance_type = "ml.g5.xlarge" if setup.device.startswith("cuda") else "ml.m5.large"
    with tempfile.TemporaryDirectory() as scratch, Session(work_root=scratch, startup_timeout_s=900) as session, \
            Model(model_data=str(model_dir), role=ROLE, sagemaker_session=session).deploy(
                initial_instance_count=1, instance_type=instance_type,
                serializer=JSONSerializer(), deserializer=JSONDeserializer()) as predictor:
        predictor.predict(_request(setup, 0))  # warm-up
        log = session.local_endpoint(predictor.endpoint_name).instances[0].log_file
        seeds = list(range(clients * requests_each))
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(lambda seed: predictor.predict(_request(setup, seed)), seeds))
        elapsed = time.perf_counter() - started
        assert [a["seeds"][0] for a in answers] == seeds, "an answer came back with another request's seed"
        joint = [int(line.split("generated ")[1].split(" requests")[0])
                 for line in log.read_text().splitlines() if "in one pipeline call" in line]
    return len(seeds) / elapsed, max(joint, default=1)


# -- embeddings ---------------------------------------------------------------------------------------

def build_qwen3_sized(dest: Path, smoke: bool) -> Path:
    """A Qwen3-0.6B-shaped embedding model (random weights, bf16 safetensors) with tiny-qwen3's tokenizer."""
    import shutil

    from transformers import AutoConfig, Qwen3Model

    from localmaker.model.builders.tiny_qwen3 import write_sentence_transformers_files
    from localmaker.model.sources import resolve_source

    tiny = resolve_source("tiny-qwen3")
    if smoke:
        return tiny
    shutil.copytree(tiny, dest)
    config = AutoConfig.from_pretrained(tiny)
    for key, value in QWEN3_06B.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    Qwen3Model(config).to(torch.bfloat16).save_pretrained(dest, safe_serialization=True)
    write_sentence_transformers_files(dest, hidden_size=QWEN3_06B["hidden_size"])
    return dest


def length_mix(count: int, seed: int = 0) -> list[str]:
    """Texts whose lengths follow a long-tailed mix, as search queries and passages do (4 to ~400 words)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(max(4, min(400, int(rng.lognormvariate(3.4, 0.9))))))
            for _ in range(count)]


def embedding_tokens_per_second(setup: Setup, model_dir: Path, texts: list[str]) -> tuple[float, float, int]:
    """Real tokens/s of localmaker's embedding model and of stock transformers (arrival-order batches of 32)."""
    from transformers import AutoModel, AutoTokenizer

    handler = load_handler()
    os.environ["LOCALMAKER_DEVICE"] = setup.device
    service = handler.model_fn(str(model_dir))
    model = service.model
    model.embed(texts[:64])  # warm-up
    tokens = sum(t.length for t in model.tokenize(texts))
    ours = _median_seconds(setup, lambda: model.embed(texts), 3)

    dtype = torch.bfloat16 if setup.device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    stock = AutoModel.from_pretrained(str(model_dir), dtype=dtype, attn_implementation="sdpa")
    stock = stock.to(setup.device).eval()

    def stock_pass() -> None:
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                batch = tokenizer(texts[start:start + 32], padding=True, truncation=True, max_length=model.max_length,
                                  return_tensors="pt").to(setup.device)
                stock(**batch).last_hidden_state[:, -1].float().cpu()

    stock_pass()
    theirs = _median_seconds(setup, stock_pass, 3)
    return tokens / ours, tokens / theirs, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3, help="requests per client in the throughput run")
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU, to check the code path")
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        parser.error("this benchmark needs a CUDA GPU; --smoke runs it at tiny size on the CPU")
    setup = Setup(device="cpu" if args.smoke else "cuda:0", smoke=args.smoke,
                  steps=2 if args.smoke else args.steps, size=64 if args.smoke else args.size)
    card = "CPU (smoke run)" if args.smoke else torch.cuda.get_device_name(0)
    print(f"device: {card}; torch {torch.__version__}")

    with tempfile.TemporaryDirectory() as scratch:
        if args.smoke:
            from localmaker.model.sources import resolve_source

            sd_dir = resolve_source("tiny-sd")
        else:
            sd_dir = build_sd15_sized(Path(scratch) / "sd15-random")
        ours_s, stock_s = sd_latency(setup, sd_dir, 1 if args.smoke else args.repeats)
        images_per_s, joint = sd_concurrent_throughput(setup, sd_dir, args.clients, args.requests)
        embed_dir = build_qwen3_sized(Path(scratch) / "qwen3-0.6b-random", args.smoke)
        texts = length_mix(64 if args.smoke else args.texts)
        ours_tps, stock_tps, tokens = embedding_tokens_per_second(setup, embed_dir, texts)

    print("\n| measure | localmaker | stock | ratio |\n| --- | ---: | ---: | ---: |")
    print(f"| SD {setup.size}², {setup.steps} steps, 1 image (s) | {ours_s:.3f} | {stock_s:.3f} | "
          f"{stock_s / ours_s:.2f}× faster |")
    print(f"| SD images/s, {args.clients} concurrent clients (largest joint call: {joint}) | {images_per_s:.2f} | "
          f"{1 / stock_s:.2f} (one at a time) | {images_per_s * stock_s:.2f}× |")
    print(f"| embedding tokens/s, {len(texts)} texts, {tokens} tokens | {ours_tps:,.0f} | {stock_tps:,.0f} | "
          f"{ours_tps / stock_tps:.2f}× |")
    print("\ntargets: SD latency ≥ 2× stock; ≥ 8 images/s at 512²×30 steps with concurrency; embeddings ≥ 2× stock")
    print(f"headline: SD latency {stock_s / ours_s:.2f}×, {images_per_s:.2f} images/s, "
          f"embedding tokens/s {ours_tps / stock_tps:.2f}× stock")


if __name__ == "__main__":
    main()
