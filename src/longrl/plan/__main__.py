"""``python -m longrl.plan``: see ``longrl.plan.cli``."""

import sys

from longrl.plan.cli import main

sys.exit(main())
