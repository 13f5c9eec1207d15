"""The ``context`` argument hooks receive when their signature asks for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class InvocationContext:
    """What a hook may want to know about the request beyond its body.

    ``custom_attributes`` is the caller's ``X-Amzn-SageMaker-Custom-Attributes`` header; a hook may set
    ``response_custom_attributes`` to send one back, as a real container can.
    """

    model_dir: Path
    custom_attributes: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    response_custom_attributes: str | None = None

    @property
    def system_properties(self) -> dict[str, str]:
        # The name the SageMaker toolkit's context uses, so scripts written for it work here.
        return {"model_dir": str(self.model_dir)}

    @classmethod
    def for_loading(cls, model_dir: Path) -> InvocationContext:
        return cls(model_dir=model_dir)
