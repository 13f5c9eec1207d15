"""The CUDA path: a GPU instance type runs on the local GPU in half precision and agrees with the CPU.

It runs only where CUDA exists (the lent GPU machine); CI and developer machines have none.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from localmaker.deploy import Model
from localmaker.deserializers import JSONDeserializer
from localmaker.serializers import JSONSerializer
from tests.e2e.conftest import ROLE

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TEXTS = ["Ronaldo Plays for portugal", "Aegentina won FIFA worldcup", "Is ronaldo better than messi"]


def _deploy(session, instance_type: str):
    return Model(model_data="tiny-qwen3", role=ROLE, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type=instance_type,
        serializer=JSONSerializer(), deserializer=JSONDeserializer())


def test_gpu_instance_runs_on_cuda_in_bf16_and_matches_the_cpu(session, tiny_qwen3_dir, capsys):
    gpu = _deploy(session, "ml.g5.xlarge")
    printed = capsys.readouterr().out
    cpu = _deploy(session, "ml.m5.xlarge")
    try:
        assert "runs locally on cuda:0" in printed
        gpu_instance = session.local_endpoint(gpu.endpoint_name).instances[0]
        assert gpu_instance.device == "cuda:0"
        assert "on cuda:0 (bfloat16)" in gpu_instance.log_file.read_text()
        cpu_instance = session.local_endpoint(cpu.endpoint_name).instances[0]
        assert "on cpu (float32)" in cpu_instance.log_file.read_text()

        on_gpu = np.array(gpu.predict({"inputs": TEXTS})["embeddings"])
        on_cpu = np.array(cpu.predict({"inputs": TEXTS})["embeddings"])
        cosines = np.sum(on_gpu * on_cpu, axis=1)
        assert cosines.min() > 0.99, cosines
        ranking_gpu = gpu.predict({"query": TEXTS[2], "documents": TEXTS[:2], "top_k": 2})["results"]
        ranking_cpu = cpu.predict({"query": TEXTS[2], "documents": TEXTS[:2], "top_k": 2})["results"]
        assert len(ranking_gpu) == len(ranking_cpu) == 2
    finally:
        gpu.delete_endpoint()
        cpu.delete_endpoint()


def test_stable_diffusion_runs_on_cuda_in_fp16_deterministically(session, tiny_sd_dir):
    from localmaker.deserializers import BytesDeserializer

    predictor = Model(model_data="tiny-sd", role=ROLE, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.g5.xlarge",
        serializer=JSONSerializer(), deserializer=BytesDeserializer())
    try:
        instance = session.local_endpoint(predictor.endpoint_name).instances[0]
        assert instance.device == "cuda:0"
        assert "on cuda:0 (float16)" in instance.log_file.read_text()
        request = {"inputs": "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k",
                   "parameters": {"num_inference_steps": 3, "seed": 42, "scheduler": "euler_a"}}
        first = predictor.predict(request, initial_args={"Accept": "image/png"})
        assert first == predictor.predict(request, initial_args={"Accept": "image/png"})
        with Image.open(io.BytesIO(first)) as image:
            assert image.size == (64, 64)
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        assert np.isfinite(pixels).all() and pixels.std() > 5, "fp16 must not collapse the image to one colour"
    finally:
        predictor.delete_endpoint()
