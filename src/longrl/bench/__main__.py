import sys

from longrl.bench.cli import main

sys.exit(main())
