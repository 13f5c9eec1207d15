"""SDK v3 (ModelBuilder) deploys and invokes a serverless endpoint unchanged against `localmaker up`.

Runs from ``.venv-sdk3`` like tests/e2e/test_sagemaker_sdk_v3.py, and is skipped where that environment is
not named in ``LOCALMAKER_SDK3_PYTHON``.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest

from localmaker.model.artifact import pack_directory
from localmaker.spec.sdk_config import CONFIG_ENV_VAR
from tests.e2e.conftest import ROLE, aws_env, running_up
from tests.e2e.test_serverless_endpoint import HANDLER, IMAGE

pytestmark = pytest.mark.e2e

SDK3_PYTHON = os.environ.get("LOCALMAKER_SDK3_PYTHON")
if SDK3_PYTHON is None:
    pytest.skip("SDK v3 runs from its own environment: `make test` creates .venv-sdk3 and sets "
                "LOCALMAKER_SDK3_PYTHON", allow_module_level=True)

# ModelBuilder.deploy(inference_config=ServerlessInferenceConfig(...)), v3's way to deploy serverless. (Its
# sagemaker-core ProductionVariantServerlessConfig cannot be used: v3 27 sends "MemorySizeInMb", which
# botocore refuses before any request leaves, against AWS as well as here.)
SERVERLESS = """
import json, sys
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.inference_config import ServerlessInferenceConfig
from sagemaker.core.resources import Endpoint, EndpointConfig
from sagemaker.core.training.configs import SourceCode
from sagemaker.serve import ModelBuilder

image, weights, code_dir, key = sys.argv[1:5]
session = Session()
model_url = session.upload_data(weights, session.default_bucket(), f"{key}/weights")
model_builder = ModelBuilder(s3_model_data_url=model_url, image_uri=image, role_arn=ROLE,
                             source_code=SourceCode(source_dir=code_dir, entry_script="inference.py"),
                             instance_type="ml.m5.xlarge")
model = model_builder.build(model_name=key)
endpoint = model_builder.deploy(endpoint_name=key, inference_config=ServerlessInferenceConfig(
    memory_size_in_mb=2048, max_concurrency=3))
answer = endpoint.invoke(body=json.dumps({"echo": "v3"}), content_type="application/json", accept="application/json")
variant = Endpoint.get(endpoint_name=key).production_variants[0]
with open("result.json", "w") as out:
    json.dump({"answer": json.loads(answer.body.read()), "memory": variant.current_serverless_config.memory_size_in_mb,
               "concurrency": variant.desired_serverless_config.max_concurrency}, out)
config = EndpointConfig.get(endpoint_config_name=endpoint.endpoint_config_name)
endpoint.delete(); config.delete(); model.delete()
"""

def test_core_resources_create_and_invoke_a_serverless_endpoint(localmaker_home: Path, tmp_path: Path):
    script = tmp_path / "script.py"
    script.write_text(f"ROLE = {ROLE!r}\n" + textwrap.dedent(SERVERLESS))
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(HANDLER)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "config.json").write_text("{}")
    weights = pack_directory(tmp_path / "weights", tmp_path / "weights.tar.gz")  # no code: the SDK adds it
    with running_up() as (process, url):
        assert process.stdout is not None
        prefix = f"export {CONFIG_ENV_VAR}="
        printed = iter(process.stdout.readline, "")  # up prints its exports before it serves
        config = next(line for line in printed if line.startswith(prefix)).removeprefix(prefix).split()[0]
        key = f"v3-sl-{uuid.uuid4().hex[:8]}"
        done = subprocess.run([str(SDK3_PYTHON), str(script), IMAGE, str(weights), str(code), key],
                              capture_output=True, text=True, timeout=600, cwd=tmp_path,
                              env={**aws_env(url), CONFIG_ENV_VAR: config})
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result == {"answer": {"pid": result["answer"]["pid"], "echo": "v3"}, "memory": 2048, "concurrency": 3}
