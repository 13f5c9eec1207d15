"""Keeps the real instance type of each endpoint config while moto records a stand-in.

moto validates ``InstanceType`` against an old list without g5, g6 or p5 instances. localmaker checks
types against its own catalogue instead, hands moto a type it accepts, and puts the real one back into
every answer that shows it. This stays at the wire protocol: moto's classes are never touched.
"""

from __future__ import annotations

import threading
from typing import Any

from localmaker.spec.instance_types import lookup

STAND_IN_TYPE = "ml.m5.large"


class InstanceTypeLedger:
    def __init__(self) -> None:
        self._types: dict[str, list[str | None]] = {}
        self._lock = threading.Lock()

    def record(self, request: dict[str, Any]) -> dict[str, Any]:
        """Check the request's types (ConfigurationError names a bad one) and return what moto gets."""
        variants = request.get("ProductionVariants") or []
        real = [lookup(v["InstanceType"]).name if "InstanceType" in v else None for v in variants]
        with self._lock:
            self._types[str(request.get("EndpointConfigName", ""))] = real
        stand_in = [{**v, "InstanceType": STAND_IN_TYPE} if "InstanceType" in v else v for v in variants]
        return {**request, "ProductionVariants": stand_in}

    def restore(self, description: dict[str, Any]) -> dict[str, Any]:
        """Put the real types back into a DescribeEndpointConfig answer."""
        with self._lock:
            real = self._types.get(str(description.get("EndpointConfigName", "")))
        if real:
            for variant, instance_type in zip(description.get("ProductionVariants", []), real, strict=False):
                if instance_type:
                    variant["InstanceType"] = instance_type
        return description

    def forget(self, config_name: str) -> None:
        with self._lock:
            self._types.pop(config_name, None)
