"""The training script's copies of shared names equal localmaker.spec's, and the script imports no
localmaker: a real SageMaker training container runs it without localmaker installed."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from localmaker.spec import names, training_progress
from localmaker.training import SOURCE_DIR
from tests.training.script_loader import sibling

progress_lines = sibling("progress_lines")


def test_file_names_and_progress_prefix_equal_the_specs() -> None:
    assert progress_lines.PROGRESS_PREFIX == training_progress.PREFIX
    assert sibling("lora_adapter").LORA_WEIGHTS == names.LORA_WEIGHTS_FILE
    assert sibling("training_outputs").BASE_MODEL_FILE == names.LORA_BASE_MODEL_FILE


@pytest.mark.parametrize("step, total, loss", [
    (1, 1, 0.25), (3, 40, 0.0714503), (1000, 1000, 1234.5), (7, 9, 1e-9),
    (2, 5, math.inf), (2, 5, -math.inf), (4, 5, math.nan),
])
def test_a_printed_progress_line_parses_with_the_specs_parser(step: int, total: int, loss: float,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    progress_lines.report_progress(step, total, loss)
    printed = capsys.readouterr().out
    assert printed.endswith("\n") and printed.count("\n") == 1
    assert printed[:-1] == training_progress.format_progress(step, total, loss)
    parsed = training_progress.parse_progress(printed)
    assert parsed is not None, printed
    assert (parsed.step, parsed.total) == (step, total)
    if math.isnan(loss):
        assert math.isnan(parsed.loss)
    else:
        assert parsed.loss == float(f"{loss:.6f}")


def _imported_modules(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports, with its relative level (0 for an absolute import)."""
    imported: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            imported += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append((node.module or "", node.level))
    return imported


def test_no_training_module_imports_localmaker() -> None:
    modules = sorted(SOURCE_DIR.glob("*.py"))
    assert len(modules) > 2
    for path in modules:
        for name, level in _imported_modules(path):
            assert name.split(".")[0] != "localmaker", f"{path.name} imports {name}"
            # the container runs train_lora.py as a script: siblings are top-level modules, not a package
            assert level == 0, f"{path.name} has a relative import of {name!r}"
