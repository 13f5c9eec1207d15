"""The package's layout holds: arrows between rooms run one way, and no module outgrows one concern.

ARCHITECTURE.md: entry points → deploy → control_plane (lazily) → local_endpoint → model, and everything
→ spec. The shipped code (inference/, training/) imports nothing of localmaker. Both are read from the
source with ``ast``, lazy imports inside functions included, so an arrow added anywhere is caught.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "localmaker"
# A room may import the rooms ranked below it. The root package, errors and logging_setup are the shared base.
RANK = {
    "__main__": 8,
    "cli": 7,
    "contract": 6, "pytest_plugin": 6, "serializers": 6, "deserializers": 6,
    "deploy": 5,
    "control_plane": 4,
    "local_endpoint": 3,
    "model": 2,
    "spec": 1,
    "localmaker": 0, "errors": 0, "logging_setup": 0,
}
SHIPPED = ("inference", "training")  # never import localmaker; anyone may import them (for their folder's path)
MAX_MODULE_LINES = 400


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "localmaker":
        return None
    return parts[1] if len(parts) > 1 else "localmaker"


def _imports(path: Path) -> list[tuple[str, bool]]:
    """Every absolute import of ``path`` as (module, at top level), ``from localmaker import x`` as localmaker.x."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "localmaker" else [node.module]
            found += [(name, id(node) in top_level) for name in names]
    return found


def _modules() -> list[tuple[str, Path]]:
    """(room, path) of every module; a package's ``__init__`` belongs to the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = [part for part in path.relative_to(PACKAGE).with_suffix("").parts if part != "__init__"]
        found.append((_room(".".join(["localmaker", *parts])) or "", path))
    return found


def test_arrows_between_rooms_run_one_way():
    wrong = []
    for room, path in _modules():
        if room == "localmaker" and path.name == "__init__.py":
            continue  # the root's __getattr__ imports deploy on first use, checked below
        for module, _ in _imports(path):
            target = _room(module)
            if target is None or target == room or target in SHIPPED:
                continue
            if room in SHIPPED or RANK.get(target, 99) >= RANK.get(room, -1):
                wrong.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    assert wrong == []


def test_the_client_reaches_the_control_plane_only_lazily():
    eager = [f"{path.relative_to(PACKAGE.parent)} imports {module}"
             for room, path in _modules() if room == "deploy"
             for module, top_level in _imports(path) if top_level and _room(module) == "control_plane"]
    assert eager == []


def test_the_root_package_imports_deploy_only_on_first_use():
    eager = [module for module, top_level in _imports(PACKAGE / "__init__.py")
             if top_level and _room(module) not in (None, "errors")]
    assert eager == []


def test_shipped_code_imports_nothing_of_localmaker():
    for folder in SHIPPED:
        for path in (PACKAGE / folder).glob("*.py"):
            assert [m for m, _ in _imports(path) if _room(m)] == [], path


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_outgrows_one_concern(path: Path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines; split it by concern"


def test_importing_the_client_loads_neither_moto_nor_the_control_plane():
    probe = ("import json, sys\n"
             "from localmaker import Session, Model, Estimator, FakePredictor\n"
             "from localmaker.deploy import Predictor\n"
             "print(json.dumps(sorted(m for m in sys.modules if m == 'moto' or m.startswith(('moto.', "
             "'localmaker.control_plane')))))\n")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(loaded.stdout) == []
