"""Stable Diffusion through the whole path: tiny-sd deployed to gunicorn, images over HTTP, the sweep."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from localmaker import ModelError
from localmaker.deploy import FakePredictor, Model
from localmaker.deploy.contact_sheet import SheetLayout, wrap_title
from localmaker.deploy.sweep import SweepSettings, contact_sheet, run_sweep, sweep_title
from localmaker.deserializers import BytesDeserializer, ImageDeserializer, JSONDeserializer
from localmaker.serializers import JSONSerializer
from tests.e2e.conftest import ROLE, instance_pids

pytestmark = pytest.mark.e2e

PROMPT = "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k"
FAST = {"guidance_scale": 7.5, "num_inference_steps": 2, "seed": 42}


@pytest.fixture(scope="module")
def image_endpoint(session, tiny_sd_dir, started_groups):
    predictor = Model(model_data="tiny-sd", role=ROLE, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.m5.xlarge",
        serializer=JSONSerializer(), deserializer=BytesDeserializer())
    started_groups.update(instance_pids(session, predictor.endpoint_name))
    yield predictor
    predictor.delete_endpoint()


def test_png_bytes_for_the_seed_prompt_are_deterministic(image_endpoint):
    request = {"inputs": PROMPT, "parameters": {**FAST, "negative_prompt": "blurry, low quality, distorted, watermark"}}
    first = image_endpoint.predict(request, initial_args={"Accept": "image/png"})
    again = image_endpoint.predict(request, initial_args={"Accept": "image/png"})
    assert first == again
    assert image_endpoint.last_response_headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(first))
    assert image.format == "PNG" and image.size == (64, 64)
    other = image_endpoint.predict({"inputs": PROMPT, "parameters": {**FAST, "seed": 43}},
                                   initial_args={"Accept": "image/png"})
    assert other != first


def test_json_response_carries_images_seeds_parameters_and_timings(session, image_endpoint):
    request = {"inputs": PROMPT, "parameters": {**FAST, "num_images_per_prompt": 2}}
    answer = FakePredictor(image_endpoint.endpoint_name, session, JSONSerializer(), JSONDeserializer()).predict(request)
    assert answer["seeds"] == [42, 43]
    assert len(answer["images"]) == 2
    assert answer["parameters"]["num_inference_steps"] == 2 and answer["parameters"]["height"] == 64
    assert answer["timings"]["total_s"] > 0 and answer["timings"]["per_step_ms"] > 0
    images = FakePredictor(image_endpoint.endpoint_name, session, JSONSerializer(),
                           ImageDeserializer("application/json")).predict(request)
    assert [img.size for img in images] == [(64, 64), (64, 64)]
    single = FakePredictor(image_endpoint.endpoint_name, session, JSONSerializer(), ImageDeserializer()).predict(
        {"inputs": PROMPT, "parameters": FAST})
    assert isinstance(single, Image.Image) and single.mode == "RGB"


def test_jpeg_and_the_406_for_several_raw_images(image_endpoint):
    jpeg = image_endpoint.predict({"inputs": PROMPT, "parameters": FAST}, initial_args={"Accept": "image/jpeg"})
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    with pytest.raises(ModelError) as caught:
        image_endpoint.predict({"inputs": PROMPT, "parameters": {**FAST, "num_images_per_prompt": 2}},
                               initial_args={"Accept": "image/png"})
    assert caught.value.original_status_code == 406
    assert "application/json" in caught.value.original_message


@pytest.mark.parametrize(("parameters", "field"), [
    ({"guidance_scale": 31}, "guidance_scale"),
    ({"num_inference_steps": 0}, "num_inference_steps"),
    ({"height": 65}, "height"),
    ({"scheduler": "heun"}, "scheduler"),
    ({"num_images_per_prompt": 8, "height": 1024, "width": 1024}, "num_images_per_prompt"),
    ({"steps": 3}, "steps"),
])
def test_bad_parameters_get_a_400_naming_the_field(image_endpoint, parameters, field):
    with pytest.raises(ModelError) as caught:
        image_endpoint.predict({"inputs": PROMPT, "parameters": parameters})
    assert caught.value.original_status_code == 400
    assert field in caught.value.original_message
    assert image_endpoint.predict({"inputs": PROMPT, "parameters": FAST}, initial_args={"Accept": "image/png"})


def test_empty_prompt_is_a_400(image_endpoint):
    with pytest.raises(ModelError) as caught:
        image_endpoint.predict({"inputs": "  ", "parameters": FAST})
    assert caught.value.original_status_code == 400


def test_sweep_renders_the_expected_grid(session, image_endpoint):
    settings = SweepSettings(prompt=PROMPT, guidance_scales=[1.0, 7.5], step_counts=[1, 2, 3],
                             negative_prompt="blurry")
    results = run_sweep(session, image_endpoint.endpoint_name, settings, show_progress=False)
    assert [(r.guidance, r.steps) for r in results] == [(g, s) for g in (1.0, 7.5) for s in (1, 2, 3)]
    sheet = contact_sheet(results, settings)
    assert sheet.size == _expected_sheet_size(sheet.width, settings, rows=2, columns=3)
    # different guidance with the same seed and steps must change the picture
    assert not np.array_equal(np.asarray(results[1].image), np.asarray(results[4].image))


def test_sweep_cli_against_a_running_endpoint(session, image_endpoint, tmp_path):
    output = tmp_path / "sheet.png"
    done = subprocess.run(
        [sys.executable, "-m", "localmaker.cli", "sweep", "--endpoint", image_endpoint.endpoint_name,
         "--endpoint-url", session.endpoint_url, "--prompt", PROMPT, "--guidance", "5,9", "--steps", "1,2",
         "-o", str(output), "--table", str(tmp_path / "sheet.csv")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert "sweep" in done.stderr  # the progress bar
    settings = SweepSettings(prompt=PROMPT, guidance_scales=[5, 9], step_counts=[1, 2])
    with Image.open(output) as sheet:
        assert sheet.size == _expected_sheet_size(sheet.width, settings, rows=2, columns=2)
    lines = (tmp_path / "sheet.csv").read_text().splitlines()
    assert lines[0].startswith("guidance_scale,num_inference_steps,seconds_per_image")
    assert len(lines) == 5



def _expected_sheet_size(width: int, settings: SweepSettings, rows: int, columns: int) -> tuple[int, int]:
    """64-pixel images are shown in 128-pixel cells, under a title wrapped to the sheet's width."""
    lines = len(wrap_title(sweep_title(settings), width - 24))
    return SheetLayout(cell_size=128, title_lines=lines).canvas_size(rows=rows, columns=columns)
