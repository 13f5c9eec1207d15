"""SageMaker Python SDK v3 scripts, as its documentation shows them, run unchanged against localmaker.

v3 cannot live in the project's environment (its mlflow pins gunicorn below 27, and it is the same
distribution as v2), so `make test` builds `.venv-sdk3` and names its interpreter in
``LOCALMAKER_SDK3_PYTHON``; the scripts run there, as a user's would, and reach localmaker only through
``AWS_ENDPOINT_URL`` and the SDK config file that `localmaker up` writes (default bucket, no telemetry).
Both flows run against `localmaker up` and against a ``Session()``'s embedded control plane.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from localmaker.model.artifact import pack, pack_directory
from localmaker.spec.sdk_config import CONFIG_ENV_VAR, sdk_config
from tests.e2e.conftest import ROLE, aws_env, running_up

pytestmark = pytest.mark.e2e

SDK3_PYTHON = os.environ.get("LOCALMAKER_SDK3_PYTHON")
if SDK3_PYTHON is None:
    pytest.skip("SDK v3 runs from its own environment: `make test` creates .venv-sdk3 and sets "
                "LOCALMAKER_SDK3_PYTHON", allow_module_level=True)

IMAGE = """
from sagemaker.core import image_uris

image = image_uris.retrieve(framework="pytorch", region="us-east-1", version="2.3", py_version="py311",
                            instance_type="ml.m5.xlarge", image_scope="inference")
"""

# sagemaker-core's example notebook (inference_and_resource_chaining.ipynb), with resource chaining.
CORE_RESOURCES = IMAGE + """
import json, sys
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.resources import Endpoint, EndpointConfig, Model
from sagemaker.core.shapes import ContainerDefinition, ProductionVariant
from sagemaker.core.serializers import JSONSerializer
from sagemaker.core.deserializers import JSONDeserializer

archive, key = sys.argv[1:3]
sagemaker_session = Session()
model_url = sagemaker_session.upload_data(archive, sagemaker_session.default_bucket(), key)
model = Model.create(model_name=key, execution_role_arn=ROLE, primary_container=ContainerDefinition(
    image=image, model_data_url=model_url, environment={"SAGEMAKER_PROGRAM": "inference.py"}))
endpoint_config = EndpointConfig.create(endpoint_config_name=key, production_variants=[ProductionVariant(
    variant_name="AllTraffic", initial_instance_count=1, instance_type="ml.m5.xlarge", model_name=model)])
endpoint = Endpoint.create(endpoint_name=key, endpoint_config_name=endpoint_config)
endpoint.wait_for_status("InService", poll=1)

got = [Model.get(model_name=key).model_name, EndpointConfig.get(endpoint_config_name=key).endpoint_config_name,
       Endpoint.get(endpoint_name=key).endpoint_status]
listed = [[m.model_name for m in Model.get_all()], [c.endpoint_config_name for c in EndpointConfig.get_all()],
          [e.endpoint_name for e in Endpoint.get_all()]]
model.refresh(); endpoint_config.refresh(); endpoint.refresh()
payload = {"inputs": ["Ronaldo Plays for portugal", "Aegentina won FIFA worldcup"]}
raw = endpoint.invoke(body=json.dumps(payload), content_type="application/json", accept="application/json")
endpoint.serializer, endpoint.deserializer = JSONSerializer(), JSONDeserializer()
decoded = endpoint.invoke(body=payload, content_type="application/json", accept="application/json").body
with open("result.json", "w") as out:
    json.dump({"got": got, "listed": listed, "status": endpoint.endpoint_status,
               "raw": json.loads(raw.body.read()), "decoded": decoded,
               "container": model.primary_container.environment}, out)
endpoint.delete(); endpoint.wait_for_delete(poll=1); endpoint_config.delete(); model.delete()
"""

# ModelBuilder with custom inference code: the v3 way to do what v2's PyTorchModel(entry_point=...) did.
MODEL_BUILDER = IMAGE + """
import json, sys
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.resources import EndpointConfig
from sagemaker.core.training.configs import SourceCode
from sagemaker.serve import ModelBuilder

weights, code_dir, key = sys.argv[1:4]
session = Session()
model_url = session.upload_data(weights, session.default_bucket(), f"{key}/weights")
model_builder = ModelBuilder(s3_model_data_url=model_url, image_uri=image, role_arn=ROLE,
                             source_code=SourceCode(source_dir=code_dir, entry_script="inference.py"),
                             instance_type="ml.m5.xlarge")
model = model_builder.build(model_name=key)
endpoint = model_builder.deploy(endpoint_name=key, instance_type="ml.m5.xlarge", initial_instance_count=1)
answer = endpoint.invoke(body=json.dumps({"inputs": ["hello", "world"]}), content_type="application/json",
                         accept="application/json")
with open("result.json", "w") as out:
    json.dump({"answer": json.loads(answer.body.read()), "status": endpoint.endpoint_status,
               "container": model.primary_container.environment}, out)
config = EndpointConfig.get(endpoint_config_name=endpoint.endpoint_config_name)
endpoint.delete(); config.delete(); model.delete()
"""


@pytest.fixture(params=["up", "embedded"])
def target(request, session, localmaker_home, tmp_path_factory):
    """The control plane's URL and the SDK config file to export: `localmaker up` as its own process,
    with the file it wrote and named, or the embedded control plane of a Session in this process, with
    the same text written here."""
    if request.param == "embedded":
        config = tmp_path_factory.mktemp("sdk-config") / "sagemaker-sdk-config.yaml"
        config.write_text(sdk_config("us-east-1"))
        yield session.endpoint_url, config
        return
    with running_up() as (process, url):
        assert process.stdout is not None
        prefix = f"export {CONFIG_ENV_VAR}="
        printed = iter(process.stdout.readline, "")  # up prints its exports before it serves, then waits
        named = next(line for line in printed if line.startswith(prefix)).removeprefix(prefix).split()[0]
        yield url, Path(named)


def _run(tmp_path: Path, target: tuple[str, Path], source: str, *args: str) -> dict[str, Any]:
    url, config = target
    assert config.is_file()
    script = tmp_path / "script.py"
    script.write_text(f"ROLE = {ROLE!r}\n" + textwrap.dedent(source))
    env = {**aws_env(url), CONFIG_ENV_VAR: str(config)}
    done = subprocess.run([str(SDK3_PYTHON), str(script), *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads((tmp_path / "result.json").read_text()))


def _unit_rows(rows: list[list[float]]) -> bool:
    return all(abs(sum(x * x for x in row) - 1.0) < 1e-4 for row in rows)


def test_core_resources_create_read_invoke_and_delete(target, tmp_path, tiny_qwen3_dir):
    key = f"v3-core-{uuid.uuid4().hex[:8]}"
    result = _run(tmp_path, target, CORE_RESOURCES, str(pack(tiny_qwen3_dir, tmp_path / "m.tar.gz")), key)
    assert result["got"] == [key, key, "InService"] and result["status"] == "InService"
    assert all(key in names for names in result["listed"])
    assert _unit_rows(result["raw"]["embeddings"]) and len(result["raw"]["embeddings"]) == 2
    assert result["decoded"]["embeddings"] == result["raw"]["embeddings"]
    assert result["container"] == {"SAGEMAKER_PROGRAM": "inference.py"}


def test_model_builder_builds_deploys_and_invokes_custom_code(target, tmp_path, tiny_qwen3_dir):
    packed = pack(tiny_qwen3_dir, tmp_path / "packed.tar.gz")
    with tarfile.open(packed) as tar:  # the user's code folder, as the built-in handler ships it
        tar.extractall(tmp_path, members=[m for m in tar.getmembers() if m.name.startswith("code/")],
                       filter="data")
    weights = pack_directory(tiny_qwen3_dir, tmp_path / "weights.tar.gz")  # no code: the SDK must add it
    key = f"v3-mb-{uuid.uuid4().hex[:8]}"
    result = _run(tmp_path, target, MODEL_BUILDER, str(weights), str(tmp_path / "code"), key)
    assert result["status"] == "InService"
    assert _unit_rows(result["answer"]["embeddings"]) and len(result["answer"]["embeddings"]) == 2
    assert result["container"]["SAGEMAKER_PROGRAM"] == "inference.py"

