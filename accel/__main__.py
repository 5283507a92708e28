"""``python -m accel``: the same as the ``accel`` command."""

import sys

from accel.cli import main

sys.exit(main())
