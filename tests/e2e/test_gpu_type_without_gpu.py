"""A GPU instance type on a machine without a GPU: the deploy warning holds for every handler.

The built-in handler runs on the CPU; a script that pins CUDA fails to load, and its FailureReason
says it needs a GPU rather than only what torch said.
"""

from __future__ import annotations

import threading

import pytest
import torch

from localmaker import DeploymentError
from localmaker.deploy import Model
from localmaker.local_endpoint import gpu_requirement
from localmaker.model.artifact import pack_handler
from tests.e2e.conftest import ROLE

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")]

PINS_CUDA = """
import torch

def model_fn(model_dir):
    return torch.nn.Linear(2, 2).to("cuda")

def predict_fn(data, model):
    return {"ok": True}
"""


def test_a_script_that_pins_cuda_fails_saying_it_needs_a_gpu(session, tmp_path, monkeypatch):
    # The warning is said once per process, and an earlier test in this one may have deployed a GPU type.
    monkeypatch.setattr(gpu_requirement, "_warned", threading.Event())
    model = Model(model_data=str(pack_handler(PINS_CUDA, tmp_path / "model.tar.gz")), role=ROLE,
                  sagemaker_session=session)
    with pytest.warns(UserWarning, match="a script that requires CUDA fails to load"), \
            pytest.raises(DeploymentError, match="needs a CUDA GPU") as failed:
        model.deploy(initial_instance_count=1, instance_type="ml.g5.xlarge", endpoint_name="pins-cuda")
    assert "model_fn failed" in str(failed.value)  # the step, then what torch said, then the note
    session.sagemaker_client.delete_endpoint(EndpointName="pins-cuda")
