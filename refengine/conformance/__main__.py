"""``python -m refengine.conformance {conformance,cases} ...``."""

import sys

from .cli import main

sys.exit(main())
