"""What the built-in handlers (``localmaker/inference``, shipped as ``code/``) accept, restated.

Those modules import each other as top-level modules (``from serving_errors import ...``), as they must
inside a container where ``code/`` is on ``sys.path``. Importing them here would put ``code/`` on this
process's ``sys.path`` and register their names in ``sys.modules``, where an endpoint process would
confuse them with a user's same-named modules. So the values the OpenAPI document needs are restated,
and ``tests/local_endpoint/test_builtin_request_rules.py`` asserts that each equals the inference module's.
"""

from __future__ import annotations

# media_codecs.py
JSON = "application/json"
NPY = "application/x-npy"
PNG = "image/png"
JPEG = "image/jpeg"
REQUEST_TYPES = (JSON,)

# request_schema.py
DEFAULT_TOP_K = 5
MAX_TEXTS = 2048

# diffusion_request.py
DEFAULT_GUIDANCE_SCALE = 7.5
DEFAULT_STEPS = 30
DEFAULT_IMAGES = 1
DEFAULT_LORA_SCALE = 1.0
GUIDANCE_RANGE = (0.0, 30.0)
STEPS_RANGE = (1, 150)
SEED_RANGE = (0, 2**32 - 1)
SIZE_RANGE = (64, 1024)
SIZE_MULTIPLE = 8
IMAGES_RANGE = (1, 8)
LORA_SCALE_RANGE = (0.0, 2.0)

# diffusion_progress.py
JSON_LINES = "application/jsonlines"

# diffusion_schedulers.py
SCHEDULER_NAMES = ("pndm", "ddim", "euler", "euler_a", "dpmpp_2m", "lms")
