"""``python -m localmaker.model SOURCE`` prints the folder a model source resolves to (see sources.main)."""

import sys

from localmaker.model.sources import main

sys.exit(main())
