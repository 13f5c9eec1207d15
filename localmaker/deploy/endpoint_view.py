"""What ``Session.local_endpoint(name)`` answers: the control plane's view of a running endpoint, typed.

Scripts and tests read instance URLs, pids and log files from it instead of digging through the JSON
(``info["Variants"][0]["Instances"][0]["Url"]``). It is still a read-only mapping of that JSON, so code
that indexes it by key keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class InstanceView:
    instance_id: str
    url: str
    pid: int
    log_file: Path
    device: str | None  # None for a retired instance, which serves nothing

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> InstanceView:
        return cls(instance_id=str(record["InstanceId"]), url=str(record["Url"]), pid=int(record["Pid"]),
                   log_file=Path(record["LogFile"]), device=record.get("Device"))


@dataclass(frozen=True)
class VariantView:
    name: str
    instance_type: str
    instances: tuple[InstanceView, ...]

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> VariantView:
        return cls(name=str(record["VariantName"]), instance_type=str(record["InstanceType"]),
                   instances=tuple(InstanceView.from_json(i) for i in record.get("Instances", [])))


class EndpointView(Mapping[str, Any]):
    """An endpoint as it runs now: its status, its variants' instances in rotation, and retired ones."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self._record = dict(record)
        self.name = str(record["EndpointName"])
        self.status = str(record["EndpointStatus"])
        self.config_name = str(record.get("EndpointConfigName", ""))
        self.failure_reason = str(record.get("FailureReason") or "")
        self.variants = tuple(VariantView.from_json(v) for v in record.get("Variants", []))
        self.retired = tuple(InstanceView.from_json(i) for i in record.get("RetiredInstances", []))

    @property
    def instances(self) -> tuple[InstanceView, ...]:
        """Every instance in rotation, variant by variant."""
        return tuple(instance for variant in self.variants for instance in variant.instances)

    @property
    def instance_urls(self) -> list[str]:
        return [instance.url for instance in self.instances]

    def variant(self, name: str) -> VariantView:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(f"endpoint {self.name!r} has no variant {name!r}; it has "
                       f"{', '.join(v.name for v in self.variants) or 'none'}")

    def __getitem__(self, key: str) -> Any:
        return self._record[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._record)

    def __len__(self) -> int:
        return len(self._record)

    def __repr__(self) -> str:
        return f"EndpointView({self.name!r}, {self.status}, instances={self.instance_urls})"
