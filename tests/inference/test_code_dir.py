"""The code/ folder must run unchanged in a real SageMaker container: no localmaker, no relative imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from localmaker.inference import CODE_DIR

# What a SageMaker PyTorch / Hugging Face container has, plus optional imports guarded by try/except.
THIRD_PARTY = {"torch", "transformers", "diffusers", "PIL", "numpy", "tqdm", "sagemaker_inference",
               "onnxruntime", "onnx"}  # the last two only with LOCALMAKER_EMBEDDING_BACKEND=onnxruntime
SHIPPED = sorted(p for p in CODE_DIR.glob("*.py") if p.name != "__init__.py")
SIBLINGS = {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_imports_only_stdlib_container_packages_and_siblings(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import (siblings are top-level modules)"
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top != "localmaker", f"{path.name} imports localmaker"
            assert top in sys.stdlib_module_names or top in THIRD_PARTY or top in SIBLINGS, f"{path.name}: {name}"


def test_sibling_names_do_not_shadow_installed_modules() -> None:
    generic = {"pooling", "errors", "settings", "utils", "schema", "codecs", "model", "inference_utils"}
    assert not (SIBLINGS - {"inference"}) & (generic | set(sys.stdlib_module_names))


def test_requirements_list_what_the_container_needs_beyond_torch() -> None:
    lines = (CODE_DIR / "requirements.txt").read_text().split()
    names = {line.split(">=")[0] for line in lines}
    assert {"transformers", "numpy", "safetensors", "diffusers", "peft", "Pillow", "scipy"} <= names
    assert "torch" not in names and "localmaker" not in names
