"""`localmaker train --help` tells a new user what the built-in LoRA job trains with when nothing is given,
and `examples make-style-dataset` and `pack` show every default (issue 17, point 1)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.cli.test_help_text import _help_entries

CLI = [sys.executable, "-m", "localmaker.cli"]


def _help(*command: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    shown = subprocess.run([*CLI, *command, "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert shown.returncode == 0, shown.stderr
    return _help_entries(shown.stdout)


def test_train_help_shows_the_rehearsal_defaults_and_what_is_required():
    entries = _help("train")
    assert "base_model=tiny-sd resolution=64 learning_rate=0.005 max_train_steps=100" in entries["--hp"]
    assert "resolution=512 learning_rate=1e-4 max_train_steps=200" in entries["--hp"]
    assert entries["--data"].endswith("(required unless --channel gives the channels)")
    assert entries["--entry-point"].endswith("(default: train_lora.py)")
    assert entries["--instance-type"].endswith("(default: ml.g5.2xlarge)")


def test_example_and_pack_help_show_their_defaults():
    style = _help("examples", "make-style-dataset")
    assert (style["--count"], style["--size"]) == ("how many captioned images (default: 12)",
                                                   "the images' width and height in pixels (default: 64)")
    assert style["--seed"].endswith("(default: 0)") and style["directory"]
    pack = _help("pack")
    assert "a LoRA training job's model.tar.gz" in pack["source"]
    assert pack["-o"] == "where to write the archive (default: model.tar.gz)"
    assert _help("serve")["--port"].endswith("(default: 8080)")
