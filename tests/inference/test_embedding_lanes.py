"""The built-in handler's model_lanes_fn: one embedding batch per core on a CPU, one diffusion call at a time."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from tests.inference.conftest import _model_fn_with_clean_env
from tests.inference.handler_loader import sibling


def test_an_embedding_model_on_a_cpu_runs_one_lane_per_torch_thread_each_on_one_thread(handler: ModuleType,
                                                                                       minilm_dir: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        service = _model_fn_with_clean_env(handler, minilm_dir)
        assert handler.model_lanes_fn(service) == 2
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_the_lanes_can_be_set(handler: ModuleType, minilm_dir: Path) -> None:
    service = _model_fn_with_clean_env(handler, minilm_dir, LOCALMAKER_EMBEDDING_LANES="3")
    assert handler.model_lanes_fn(service) == 3


def test_a_diffusion_pipeline_runs_one_call_at_a_time(handler: ModuleType, sd_service: Any) -> None:
    assert handler.model_lanes_fn(sd_service) == 1


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_lanes_value_that_is_not_a_positive_number_is_refused_naming_the_variable(value: str) -> None:
    settings = sibling("handler_settings")
    with pytest.raises(sibling("serving_errors").ModelLoadError, match="LOCALMAKER_EMBEDDING_LANES"):
        settings.HandlerSettings.from_env({"LOCALMAKER_EMBEDDING_LANES": value})
