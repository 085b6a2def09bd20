"""``python -m vvuq_twin`` is the ``vvuq-twin`` command."""

import sys

from .cli import main

sys.exit(main())
