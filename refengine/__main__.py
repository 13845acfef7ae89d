"""``python -m refengine``: the ``refengine`` command line."""

import sys

from .cli import main

sys.exit(main())
