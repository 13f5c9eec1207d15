"""The seed's LoRA fine-tune as a SageMaker training job, then served on top of its base model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from localmaker import TrainingError
from localmaker.deploy import Estimator, FakePredictor, Model
from localmaker.deserializers import BytesDeserializer
from localmaker.model.builders.style_dataset import make_style_dataset, style_statistics
from localmaker.serializers import JSONSerializer
from tests.e2e.conftest import ROLE, artifact_member, instance_pids

pytestmark = pytest.mark.e2e

PROMPT = "Futuristic city at night, neon lights, flying cars, cyberpunk, ultra detailed"
HYPERPARAMETERS = {"base_model": "tiny-sd", "rank": 4, "learning_rate": 5e-3, "max_train_steps": 400,
                   "train_batch_size": 2, "resolution": 64, "seed": 0}
STYLE_PROMPTS = ["futuristic city at night, neon lights, cyberpunk", "a street at night with neon signs",
                 "Astronaut in a jungle, cold color palette", "a quiet harbour at dawn"]


def _png(predictor: FakePredictor, lora_scale: float | None = None, seed: int = 7, prompt: str = PROMPT,
         steps: int = 3) -> np.ndarray:
    parameters = {"num_inference_steps": steps, "seed": seed, "guidance_scale": 7.5}
    if lora_scale is not None:
        parameters["lora_scale"] = lora_scale
    body = predictor.predict({"inputs": prompt, "parameters": parameters}, initial_args={"Accept": "image/png"})
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


@pytest.fixture(scope="module")
def style_set(tmp_path_factory):
    return make_style_dataset(tmp_path_factory.mktemp("neon-city") / "data")


@pytest.fixture(scope="module")
def trained(session, tiny_sd_dir, style_set):
    estimator = Estimator(entry_point="train_lora.py", role=ROLE, instance_count=1, instance_type="ml.g5.2xlarge",
                          hyperparameters=HYPERPARAMETERS, output_path="s3://my-bucket/lora",
                          sagemaker_session=session)
    estimator.fit({"training": f"file://{style_set}"}, logs=False)
    return estimator


@pytest.fixture(scope="module")
def endpoints(session, trained, started_groups):
    adapted = trained.deploy(initial_instance_count=1, instance_type="ml.g5.xlarge",
                             serializer=JSONSerializer(), deserializer=BytesDeserializer())
    base = Model(model_data="tiny-sd", role=ROLE, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.m5.xlarge",
        serializer=JSONSerializer(), deserializer=BytesDeserializer())
    for predictor in (adapted, base):
        started_groups.update(instance_pids(session, predictor.endpoint_name))
    yield adapted, base
    adapted.delete_endpoint()
    base.delete_endpoint()


def test_the_job_completes_and_moto_records_the_artifact(session, trained):
    job = session.sagemaker_client.describe_training_job(TrainingJobName=trained.latest_training_job)
    assert job["TrainingJobStatus"] == "Completed"
    assert trained.model_data == f"s3://my-bucket/lora/{trained.latest_training_job}/output/model.tar.gz"
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == trained.model_data
    reference = json.loads(artifact_member(session, trained.model_data, "localmaker_base_model.json"))
    assert reference["base_model"] == "tiny-sd"
    assert artifact_member(session, trained.model_data, "pytorch_lora_weights.safetensors")


def test_the_loss_at_the_end_is_lower_than_at_the_start(session, trained):
    outputs = trained.model_data.replace("model.tar.gz", "output.tar.gz")
    metrics = json.loads(artifact_member(session, outputs, "training_metrics.json"))
    assert len(metrics["losses"]) == HYPERPARAMETERS["max_train_steps"]
    # the loss on every training image at fixed timesteps and noise, measured before and after training
    print(f"evaluation loss before {metrics['eval_loss_before']:.4f}, after {metrics['eval_loss_after']:.4f}")
    assert metrics["eval_loss_after"] < 0.98 * metrics["eval_loss_before"]


def test_lora_scale_zero_is_the_base_model_and_the_adapter_changes_the_image(endpoints):
    adapted, base = endpoints
    assert np.array_equal(_png(adapted, lora_scale=0.0), _png(base))
    assert not np.array_equal(_png(adapted, lora_scale=1.0), _png(base))


def test_adapted_images_move_toward_the_training_sets_colours(endpoints, style_set):
    """The style set is dark and saturated (night scenes, neon). Metric: the gap between the mean
    brightness and mean saturation of 16 generated images (4 prompts x 4 seeds, the same for both
    endpoints) and those of the training images. The adapter must shrink the gap in each statistic."""
    adapted, base = endpoints
    training = style_statistics(Image.open(path) for path in sorted(style_set.glob("*.png")))

    def gaps(predictor: FakePredictor) -> np.ndarray:
        images = [Image.fromarray(_png(predictor, seed=seed, prompt=prompt, steps=10))
                  for prompt in STYLE_PROMPTS for seed in range(4)]
        statistics = style_statistics(images)
        return np.abs([statistics["mean_brightness"] - training["mean_brightness"],
                       statistics["mean_saturation"] - training["mean_saturation"]])

    base_gaps, adapted_gaps = gaps(base), gaps(adapted)
    print(f"gap to the training set (brightness, saturation): base {base_gaps.round(3)}, "
          f"adapted {adapted_gaps.round(3)}")
    assert (adapted_gaps < base_gaps).all(), (base_gaps, adapted_gaps)


def test_stock_diffusers_loads_the_artifact_and_draws_what_the_endpoint_draws(session, trained, endpoints,
                                                                             tiny_sd_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    bucket, key = trained.model_data.removeprefix("s3://").split("/", 1)
    archive = tmp_path / "model.tar.gz"
    session.s3_client.download_file(bucket, key, str(archive))
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "lora", filter="data")
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir)
    pipe.load_lora_weights(tmp_path / "lora")
    direct = pipe(PROMPT, num_inference_steps=3, guidance_scale=7.5, cross_attention_kwargs={"scale": 0.8},
                  generator=torch.Generator("cpu").manual_seed(7)).images[0]
    adapted, _ = endpoints
    assert np.array_equal(np.asarray(direct.convert("RGB")), _png(adapted, lora_scale=0.8))


def test_a_bad_hyperparameter_fails_the_job_with_the_fix(session, style_set):
    estimator = Estimator(entry_point="train_lora.py", role=ROLE, instance_type="ml.m5.xlarge",
                          hyperparameters={**HYPERPARAMETERS, "resolution": 65}, sagemaker_session=session)
    with pytest.raises(TrainingError, match="multiple of 8") as caught:
        estimator.fit(f"file://{style_set}", logs=False)
    assert caught.value.status == "Failed"


def test_missing_captions_and_an_unknown_base_fail_fast(session, style_set, tmp_path):
    uncaptioned = tmp_path / "uncaptioned"
    uncaptioned.mkdir()
    Image.new("RGB", (64, 64), (200, 0, 200)).save(uncaptioned / "stray.png")
    estimator = Estimator(entry_point="train_lora.py", role=ROLE, instance_type="ml.m5.xlarge",
                          hyperparameters=HYPERPARAMETERS, sagemaker_session=session)
    with pytest.raises(TrainingError, match="stray.png"):
        estimator.fit(f"file://{uncaptioned}", logs=False)
    unknown = Estimator(entry_point="train_lora.py", role=ROLE, instance_type="ml.m5.xlarge",
                        hyperparameters={**HYPERPARAMETERS, "base_model": "no-such-model"}, sagemaker_session=session)
    with pytest.raises(TrainingError, match="no-such-model"):
        unknown.fit(f"file://{style_set}", logs=False)


def test_cli_makes_the_style_set_and_trains_on_it(tmp_path, tiny_sd_dir):
    data = tmp_path / "neon"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("AWS_ENDPOINT_URL", None)
    made = subprocess.run([sys.executable, "-m", "localmaker.cli", "examples", "make-style-dataset", str(data),
                           "--count", "4"], capture_output=True, text=True, timeout=60, env=env)
    assert made.returncode == 0, made.stderr
    assert len(list(data.glob("*.png"))) == 4 and (data / "metadata.jsonl").is_file()
    download = tmp_path / "lora.tar.gz"
    trained = subprocess.run(
        [sys.executable, "-m", "localmaker.cli", "train", "--data", str(data), "--instance-type", "ml.m5.xlarge",
         "--hp", "base_model=tiny-sd", "--hp", "resolution=64", "--hp", "max_train_steps=3",
         "--download", str(download)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "model artifact: s3://" in trained.stdout
    assert "training" in trained.stderr  # the progress bar
    with tarfile.open(download) as tar:
        assert "pytorch_lora_weights.safetensors" in tar.getnames()
