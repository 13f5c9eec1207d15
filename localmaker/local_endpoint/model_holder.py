"""Loads the model once per process, in the background, so /ping can answer while model_fn runs."""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
from pathlib import Path
from typing import Any

from localmaker.inference import CODE_DIR as BUILTIN_CODE_DIR
from localmaker.local_endpoint.context import InvocationContext
from localmaker.local_endpoint.errors import ModelLoadFailed, ModelNotReady
from localmaker.local_endpoint.gpu_requirement import needs_gpu_note
from localmaker.local_endpoint.handlers import Handlers, load_script
from localmaker.local_endpoint.requirements_check import RequirementsReport, check_code_dir, explain_import_failure
from localmaker.local_endpoint.settings import EndpointSettings
from localmaker.logging_setup import quiet_model_libraries

logger = logging.getLogger(__name__)


class LoadState(enum.Enum):
    LOADING = "Loading"
    HEALTHY = "Healthy"
    FAILED = "Failed"


class ModelHolder:
    def __init__(self, settings: EndpointSettings) -> None:
        self._settings = settings
        self._state = LoadState.LOADING
        self._failure = ""
        self._ready = threading.Event()
        self.handlers: Handlers | None = None
        self.model: Any = None
        self.lanes = 1  # model threads the loaded model takes (Handlers.model_lanes)

    @property
    def state(self) -> LoadState:
        return self._state

    @property
    def failure(self) -> str:
        return self._failure

    def start(self) -> None:
        threading.Thread(target=self.load, name="model-loader", daemon=True).start()

    def load(self) -> None:
        """Import the script and run model_fn; any failure is kept for /ping rather than crashing."""
        requirements: RequirementsReport | None = None
        step = f"loading {self._settings.program}"
        # localmaker's own handler loads quietly (no library progress bars or torchvision notice in the
        # instance's log); a user's script keeps whatever its libraries print.
        quiet = quiet_model_libraries() if _is_builtin(self._settings.code_dir / self._settings.program) \
            else contextlib.nullcontext()
        try:
            requirements = self._check_requirements()
            with quiet:
                module = load_script(self._settings.code_dir, self._settings.program)
                handlers = Handlers.from_module(module)
                step = "model_fn"
                context = InvocationContext.for_loading(self._settings.model_dir)
                self.model = handlers.load_model(self._settings.model_dir, context)
                step = "model_lanes_fn"
                self.lanes = handlers.model_lanes(self.model)
            self.handlers = handlers
            self._state = LoadState.HEALTHY
            logger.info("model loaded from %s", self._settings.model_dir)
        except BaseException as exc:  # noqa: BLE001 - any failure must reach /ping, not kill the worker
            if isinstance(exc, ImportError):
                detail = explain_import_failure(exc, requirements)
            else:
                detail = f"{type(exc).__name__}: {exc}"
                note = needs_gpu_note(exc, self._settings.device)
                if note:
                    detail = f"{detail}. {note[0].upper()}{note[1:]}"
            self._failure = f"{step} failed: {detail}"
            self._state = LoadState.FAILED
            logger.exception("%s failed", step)
        finally:
            self._ready.set()

    def _check_requirements(self) -> RequirementsReport | None:
        """Report code/requirements.txt in the log: the container would have installed it, we do not."""
        report = check_code_dir(self._settings.code_dir)
        if report is not None:
            level = logging.WARNING if report.needs_attention else logging.INFO
            logger.log(level, "%s", report.summary_line())
        return report

    def wait(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def require_ready(self) -> tuple[Handlers, Any]:
        if self._state is LoadState.FAILED:
            raise ModelLoadFailed(self._failure)
        if self._state is not LoadState.HEALTHY or self.handlers is None:
            raise ModelNotReady("the model is still loading; retry once GET /ping answers 200")
        return self.handlers, self.model


def _is_builtin(script: Path) -> bool:
    """Whether ``script`` is localmaker's built-in handler, as packed into code/ (the same bytes)."""
    try:
        return script.read_bytes() == (BUILTIN_CODE_DIR / "inference.py").read_bytes()
    except OSError:
        return False
