"""Import the training script's modules the way the container does: top-level, source dir on sys.path.

Importing them as ``localmaker.training.<name>`` would hide mistakes such as a relative import or an
import of ``localmaker``, which break in a real training container; it would also give a second copy of
each module, whose exception classes are not the ones the script raises.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from localmaker.training import SOURCE_DIR

SCRIPT = SOURCE_DIR / "train_lora.py"


def sibling(name: str) -> ModuleType:
    """A module of the training source dir, imported as the top-level module the script itself uses."""
    if str(SOURCE_DIR) not in sys.path:
        sys.path.insert(0, str(SOURCE_DIR))
    return importlib.import_module(name)
