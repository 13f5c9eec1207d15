"""A cap on what one control plane's work root holds in all: artifacts, unpacked models, job data, logs.

Each unpacked artifact already has its own cap (``localmaker.model.safe_tar``, per endpoint and job);
this one bounds their sum, so that many endpoints, or one endpoint updated again and again, cannot
fill the disk. It is checked before anything new starts (``service_quotas.py``) and before an artifact
is downloaded (its size is known from S3 first), with an error that names the cap and how to change it.
"""

from __future__ import annotations

import os
from pathlib import Path

from localmaker.control_plane.api_errors import ResourceLimitExceeded


class DiskBudget:
    def __init__(self, work_root: Path, max_bytes: int) -> None:
        self.work_root = work_root
        self.max_bytes = max_bytes

    def used(self) -> int:
        """Bytes allocated under the work root, as ``du`` counts them (a sparse file counts what it holds).
        Measured afresh each time: a stat per file, cheap beside starting an endpoint or a job."""
        total = 0
        for folder, _dirs, files in os.walk(self.work_root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_blocks * 512
                except OSError:  # removed while walking
                    continue
        return total

    def check_room(self, what: str, incoming_bytes: int = 0) -> None:
        """Raise ResourceLimitExceeded where ``incoming_bytes`` more would take the work root over its cap."""
        used = self.used()
        if used + incoming_bytes > self.max_bytes:
            outcome = f"and {what} needs {incoming_bytes:,} more" if incoming_bytes else f"so {what} cannot start"
            raise ResourceLimitExceeded(
                f"The control plane's disk cap is {self.max_bytes:,} bytes: its work root {self.work_root} holds "
                f"{used:,}, {outcome}. Delete endpoints and jobs you no longer need, or raise "
                "LOCALMAKER_MAX_DISK_GB.")
