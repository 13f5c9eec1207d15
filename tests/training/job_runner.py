"""Run ``train_lora.py`` as a SageMaker training job runs it: a fresh process, ``--key value``
hyperparameters, and the ``SM_*`` environment pointing at a channel and output folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.training.script_loader import SCRIPT


@dataclass
class Job:
    root: Path
    env: dict[str, str]
    result: subprocess.CompletedProcess[str] | None = None

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def data_dir(self) -> Path:
        return self.root / "output" / "data"

    def run(self, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
        self.result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=self.root, env=self.env,
                                     capture_output=True, text=True, timeout=timeout)
        return self.result

    def failure(self) -> str:
        return (self.output_dir / "failure").read_text(encoding="utf-8")

    def metrics(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.data_dir / "training_metrics.json").read_text(encoding="utf-8"))
        return loaded


def make_job(root: Path, home: Path, channel: Path | None, **extra_env: str) -> Job:
    """A job folder and the environment the SageMaker training toolkit would give the script."""
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", LOCALMAKER_HOME=str(home), SM_NUM_GPUS="0",
               SM_MODEL_DIR=str(root / "model"), SM_OUTPUT_DIR=str(root / "output"),
               SM_OUTPUT_DATA_DIR=str(root / "output" / "data"), SM_CURRENT_HOST="algo-1",
               SM_CHANNELS=json.dumps(["training"] if channel else []))
    if channel is not None:
        env["SM_CHANNEL_TRAINING"] = str(channel)
    env.update(extra_env)
    return Job(root=root, env=env)
