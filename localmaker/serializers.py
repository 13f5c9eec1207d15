"""``from localmaker.serializers import JSONSerializer``, the import path the SageMaker SDK uses."""

from localmaker.deploy.serializers import *  # noqa: F403
from localmaker.deploy.serializers import __all__  # noqa: F401
