"""``python -m wsgate``: the same as the ``wsgate`` console script."""

import sys

from wsgate.cli.main import main

sys.exit(main())
