"""One gunicorn instance started straight from a tiny inference.py, for tests that talk to its port.

No control plane in between: the attacks and failures these tests make must be met by the instance
itself. Each handler is written to a folder of the test's, as ``code/inference.py``, and loads no weights,
so an instance is healthy within a few seconds.
"""

from __future__ import annotations

import contextlib
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from localmaker.control_plane.instance_process import InstanceProcess

# predict_fn sleeps for the request's "sleep" seconds (touching "started-<id>" first, so a test knows the
# call is under way), then echoes the request's id.
SLEEPY_HANDLER = """
    import json
    import os
    import time
    from pathlib import Path

    def model_fn(model_dir):
        return Path(model_dir)

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, folder):
        (folder / f"started-{data['id']}").touch()
        time.sleep(float(data.get("sleep", 0)))
        return {"id": data["id"]}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
"""


def write_handler(model_dir: Path, handler: str = SLEEPY_HANDLER) -> Path:
    code = model_dir / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "inference.py").write_text(textwrap.dedent(handler), encoding="utf-8")
    return model_dir


def wait_healthy(instance: InstanceProcess, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not instance.ping().healthy:
        assert instance.exited() is None, f"{instance.instance_id} exited:\n{instance.log_tail()}"
        assert time.monotonic() < deadline, f"{instance.instance_id} never healthy:\n{instance.log_tail()}"
        time.sleep(0.1)


@contextlib.contextmanager
def running_instance(folder: Path, env: dict[str, str], handler: str = SLEEPY_HANDLER,
                     model_dir: Path | None = None) -> Iterator[InstanceProcess]:
    """An instance serving ``handler`` (or the model in ``model_dir``) with ``env``; stopped after."""
    if model_dir is None:
        model_dir = write_handler(folder / "model", handler)
    instance = InstanceProcess(f"direct-{folder.name}", model_dir, folder / "instance.log",
                               {"LOCALMAKER_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "", **env})
    instance.start()
    try:
        wait_healthy(instance)
        yield instance
    finally:
        instance.stop(grace_s=2)


def invoke(url: str, body: bytes, timeout_s: float = 60.0,
           content_type: str = "application/json") -> tuple[int, dict[str, str], bytes]:
    """POST /invocations; the status, headers and body, whatever the status."""
    request = urllib.request.Request(f"{url}/invocations", data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
