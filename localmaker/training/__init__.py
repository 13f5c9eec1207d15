"""The built-in LoRA training script, shipped as a training job's source dir.

This folder is a package only so setuptools installs it. The modules never import ``localmaker``: a
SageMaker training container runs ``train_lora.py`` from the unpacked source dir, so siblings import each
other as top-level modules.
"""

from pathlib import Path

SOURCE_DIR = Path(__file__).parent
