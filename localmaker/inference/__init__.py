"""The handler code that ships inside model.tar.gz as ``code/``.

This folder is a package only so setuptools installs it; packing copies every ``*.py`` here except this
file, plus ``requirements.txt``. The modules themselves never import ``localmaker``: in a real SageMaker
container ``code/`` is put on ``sys.path`` and ``inference.py`` is loaded by file path, so siblings
import each other as top-level modules.
"""

from pathlib import Path

CODE_DIR = Path(__file__).parent
