"""``from localmaker.deserializers import JSONDeserializer``, the import path the SageMaker SDK uses."""

from localmaker.deploy.deserializers import *  # noqa: F403
from localmaker.deploy.deserializers import __all__  # noqa: F401
