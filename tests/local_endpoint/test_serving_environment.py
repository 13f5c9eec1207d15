"""The environment an instance's handler runs in: localmaker's serving defaults, which the model's own win over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability.direct_instance import invoke, running_instance

REPORTING_HANDLER = """
    import os

    def model_fn(model_dir):
        return None

    def transform_fn(model, body, content_type, accept):
        return os.environ.get("OMP_WAIT_POLICY", ""), "text/plain"
"""


@pytest.mark.parametrize(("model_env", "seen"), [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE")])
def test_openmp_threads_sleep_between_forward_passes_unless_the_model_says_otherwise(tmp_path: Path,
                                                                                      model_env: dict[str, str],
                                                                                      seen: str):
    with running_instance(tmp_path, model_env, REPORTING_HANDLER) as instance:
        status, _, body = invoke(instance.url, json.dumps({}).encode())
    assert (status, body.decode()) == (200, seen)
