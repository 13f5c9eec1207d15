"""How much an untrusted archive may cost to unpack: sizes, counts, depth, CPU time, wall time, memory.

Every figure here bounds one attack (see docs/reliability.md, "Hostile artifacts"). The size limits are
checked by name in the refusals, so the reason tells the user which limit an archive crossed. The time
limits grow with the compressed size, so a genuine 5 GB model gets minutes while a 555-byte bomb gets
seconds: a bomb's cost comes from what it decompresses to, not from what it weighs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

GIB = 1024**3


@dataclass(frozen=True)
class ArchiveLimits:
    max_total_bytes: int = 20 * GIB  # regular files' sizes summed: a tar bomb's unpacked size
    max_members: int = 100_000
    # A PAX extended header (POSIX says "records", real ones hold a path, times, ids, a few xattrs) or
    # a GNU long-name/long-link block. tarfile reads either into memory whole, and CPython before
    # 3.11.10/3.12.5 runs backtracking regexes over it (CVE-2024-6232).
    max_header_bytes: int = 64 * 1024
    max_name_bytes: int = 4096  # PATH_MAX: no longer name can be created anyway
    max_global_header_bytes: int = 8192  # all global PAX headers together; git archive writes one of 1 KiB
    # The longest run of digits in a PAX header: the vulnerable regex costs the sum of squares of
    # these runs, so 256 keeps any header under ~20 ms.
    max_digit_run: int = 256
    max_extension_chain: int = 4  # PAX/GNU headers in a row before a member; tarfile recurses on each
    max_depth: int = 128  # path components; deep trees exhaust recursive walkers (shutil.rmtree)
    memory_bytes: int = 1 * GIB  # the unpacking process's address space
    cpu_seconds_base: float = 30.0
    cpu_seconds_per_gib: float = 30.0  # of the compressed archive; gunzip runs at well over 100 MB/s
    wall_seconds_base: float = 60.0
    wall_seconds_per_gib: float = 90.0  # leaves room for a slow disk: the files are written as well

    def cpu_seconds(self, archive_bytes: int) -> int:
        return int(self.cpu_seconds_base + self.cpu_seconds_per_gib * archive_bytes / GIB + 0.999)

    def wall_seconds(self, archive_bytes: int) -> float:
        return self.wall_seconds_base + self.wall_seconds_per_gib * archive_bytes / GIB

    def with_overrides(self, **changes: object) -> ArchiveLimits:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ArchiveLimits:
        return cls(**json.loads(text))


DEFAULT_LIMITS = ArchiveLimits()
