"""Load ``inference.py`` the way SageMaker and the local server do: by file path, ``code/`` on sys.path.

Importing it as ``localmaker.inference.inference`` would hide mistakes such as a relative import or an
import of ``localmaker``, which break in a real container.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from localmaker.inference import CODE_DIR

if TYPE_CHECKING:
    import numpy as np


def load_handler_module(code_dir: Path = CODE_DIR, name: str = "localmaker_test_inference") -> ModuleType:
    """Execute ``code_dir/inference.py`` as a fresh module, with ``code_dir`` first on sys.path."""
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    spec = importlib.util.spec_from_file_location(name, code_dir / "inference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sibling(name: str, code_dir: Path = CODE_DIR) -> ModuleType:
    """A sibling of inference.py, imported as the top-level module the handler itself uses."""
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    return importlib.import_module(name)


def invoke(
    handler: ModuleType,
    model: object,
    body: bytes | str | dict[str, object] | list[object],
    content_type: str = "application/json",
    accept: str = "application/json",
) -> tuple[bytes, str]:
    """Run input_fn -> predict_fn -> output_fn, as the server does for one request."""
    import json

    raw = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    data = handler.input_fn(raw, content_type)
    prediction = handler.predict_fn(data, model)
    result: tuple[bytes, str] = handler.output_fn(prediction, accept)
    return result


def text_to_image(
    handler: ModuleType,
    service: object,
    prompt: str = "a photo of a cat",
    accept: str = "application/json",
    **parameters: object,
) -> tuple[bytes, str]:
    """One text-to-image request; tests default to 2 steps (the size defaults to tiny-sd's 64x64)."""
    parameters.setdefault("num_inference_steps", 2)
    return invoke(handler, service, {"inputs": prompt, "parameters": dict(parameters)}, accept=accept)


def json_images(raw: bytes) -> list[np.ndarray]:
    """The base64 PNG images of a JSON text-to-image response, as uint8 pixel arrays."""
    import base64
    import io
    import json

    import numpy as np
    from PIL import Image

    return [np.array(Image.open(io.BytesIO(base64.b64decode(data)))) for data in json.loads(raw)["images"]]
