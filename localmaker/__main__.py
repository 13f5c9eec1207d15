"""`python -m localmaker`: the same command as `localmaker`."""

from localmaker.cli import main

raise SystemExit(main())
