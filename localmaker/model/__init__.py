"""What is deployed: resolve weights offline, pack and safely unpack model.tar.gz, check integrity.

The builders of the offline default models (tiny-qwen3, tiny-sd) and of the example style dataset
live in ``model.builders``.
"""

from localmaker.model.artifact import pack, repack
from localmaker.model.safe_tar import unpack
from localmaker.model.sources import NAMED_SOURCES, localmaker_home, resolve_source

__all__ = ["NAMED_SOURCES", "localmaker_home", "pack", "repack", "resolve_source", "unpack"]
