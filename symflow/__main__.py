"""``python -m symflow``: the command-line interface."""

import sys

from symflow.apps.cli import main

sys.exit(main())
