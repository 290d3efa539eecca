import sys

from longrl.evaluation.cli import main

sys.exit(main())
