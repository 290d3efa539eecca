import sys

from longrl.train.cli import main

sys.exit(main())
