"""Model artifacts: resolve weights offline, build tiny test models, pack and safely unpack model.tar.gz."""

from localmaker.model.artifact import pack, repack
from localmaker.model.safe_tar import unpack
from localmaker.model.sources import NAMED_SOURCES, localmaker_home, resolve_source

__all__ = ["NAMED_SOURCES", "localmaker_home", "pack", "repack", "resolve_source", "unpack"]
