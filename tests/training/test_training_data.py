"""The training channel scan: captions from ``metadata.jsonl`` or sidecar text, and the reasons a set
cannot be used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from localmaker.model.builders.style_dataset import make_style_dataset
from tests.training.script_loader import sibling

training_data = sibling("training_data")
TrainingDataError = sibling("training_errors").TrainingDataError


def test_captions_come_from_metadata_or_sidecar_text(tmp_path: Path) -> None:
    make_style_dataset(tmp_path, count=2, size=32)
    Image.new("RGB", (40, 32), (0, 200, 255)).save(tmp_path / "extra.jpg")
    (tmp_path / "extra.txt").write_text("  a cyan sign  \n", encoding="utf-8")
    examples = training_data.scan_training_data(tmp_path)
    assert [e.image.name for e in examples] == ["extra.jpg", "neon_city_000.png", "neon_city_001.png"]
    assert examples[0].caption == "a cyan sign" and "neon" in examples[1].caption


def test_a_metadata_line_naming_a_missing_file_is_reported(tmp_path: Path) -> None:
    make_style_dataset(tmp_path, count=1, size=32)
    with (tmp_path / "metadata.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"file_name": "gone.png", "text": "neon"}\n')
    with pytest.raises(TrainingDataError, match=r"metadata.jsonl line 2 names 'gone.png'"):
        training_data.scan_training_data(tmp_path)


@pytest.mark.parametrize("bad_file", ["metadata.jsonl", "neon_city_001.txt"])
def test_a_caption_file_that_is_not_utf8_is_reported(bad_file: str, tmp_path: Path) -> None:
    make_style_dataset(tmp_path, count=2, size=32)
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "neon_city_000.png", "text": "neon"}\n', encoding="utf-8")
    (tmp_path / "neon_city_001.txt").write_text("a neon sign\n", encoding="utf-8")
    # A Windows editor's Latin-1 "café": byte 0xe9 is not valid UTF-8 here.
    (tmp_path / bad_file).write_bytes((tmp_path / bad_file).read_bytes().replace(b"neon", "café".encode("latin-1")))
    with pytest.raises(TrainingDataError, match=rf"{re.escape(bad_file)} in the training channel is not UTF-8 text "
                                                r"\(byte 0xe9 at offset \d+\); save it as UTF-8"):
        training_data.scan_training_data(tmp_path)
