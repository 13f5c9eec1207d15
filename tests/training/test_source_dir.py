"""The built-in script ships with its sibling modules, and runs from the unpacked source dir alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from localmaker.deploy.training_job import upload_source
from localmaker.training import SOURCE_DIR


class _Uploads:
    """The one Session method upload_source calls; the archive is kept instead of sent to S3."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def upload_file(self, path: Path, key: str) -> str:
        shutil.copy2(path, self.folder / Path(key).name)
        return f"s3://bucket/{key}"


def test_the_builtin_script_ships_with_every_sibling_and_runs_from_there(tmp_path: Path) -> None:
    uri = upload_source(_Uploads(tmp_path), "job-1", "train_lora.py", None)  # type: ignore[arg-type]
    assert uri == "s3://bucket/job-1/source/sourcedir.tar.gz"
    with tarfile.open(tmp_path / "sourcedir.tar.gz") as archive:
        shipped = {Path(member.name).name for member in archive.getmembers() if member.isfile()}
        archive.extractall(tmp_path / "source", filter="data")
    expected = {p.name for p in SOURCE_DIR.glob("*.py")} - {"__init__.py"}
    assert shipped == expected and "train_lora.py" in shipped
    result = subprocess.run([sys.executable, "train_lora.py", "--help"], cwd=tmp_path / "source",
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: train_lora.py --base_model SOURCE")
