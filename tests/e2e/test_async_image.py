"""The reason async endpoints exist: a full-size Stable Diffusion image on the CPU outlasts the real-time
path's 60 s model-server timeout. The built-in handler generates a 512x512, 50-step image with tiny-sd
through an async endpoint, whose instances get the async container timeout instead.

This is the slowest test of the async suite (minutes on a busy CPU), because the size and step count are
the point: a smaller image would finish within the real-time limit and prove nothing."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from localmaker.control_plane.async_config import ASYNC_CONTAINER_TIMEOUT_S
from localmaker.deploy import AsyncInferenceConfig, Model, Session, WaiterConfig
from localmaker.deserializers import JSONDeserializer
from localmaker.local_endpoint.settings import DEFAULT_TIMEOUT_S
from localmaker.serializers import JSONSerializer
from tests.e2e.conftest import ROLE, instance_pids

pytestmark = pytest.mark.e2e


def test_a_512px_50_step_image_generates_on_the_cpu_through_an_async_endpoint(
        session: Session, tiny_sd_dir: Path, started_groups: set[int]) -> None:
    predictor = Model(model_data="tiny-sd", role=ROLE, sagemaker_session=session).deploy(
        1, "ml.m5.xlarge", serializer=JSONSerializer(), deserializer=JSONDeserializer(),
        async_inference_config=AsyncInferenceConfig())
    started_groups.update(instance_pids(session, predictor.endpoint_name))
    try:
        request = {"inputs": "a lighthouse at dusk, oil painting",
                   "parameters": {"height": 512, "width": 512, "num_inference_steps": 50, "seed": 7}}
        # Up to an hour, polled every second: the request, not the client, bounds how long it may run.
        answer = predictor.predict(request, initial_args={"InvocationTimeoutSeconds": ASYNC_CONTAINER_TIMEOUT_S},
                                   waiter_config=WaiterConfig(max_attempts=ASYNC_CONTAINER_TIMEOUT_S, delay=1))
    finally:
        predictor.delete_endpoint()
    assert answer["parameters"]["num_inference_steps"] == 50
    assert answer["parameters"]["height"] == 512 and answer["parameters"]["width"] == 512
    [encoded] = answer["images"]
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert image.size == (512, 512)
    assert len(set(image.convert("L").getdata())) > 16  # a picture, not a blank frame
    print(f"512x512, 50 steps: {answer['timings']['total_s']:.0f} s (the real-time path gives up after "
          f"{DEFAULT_TIMEOUT_S} s)")
