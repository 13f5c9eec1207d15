"""``python -m localmaker.cli``: the same command as the ``localmaker`` script."""

import sys

from localmaker.cli import main

sys.exit(main())
