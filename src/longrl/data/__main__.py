import sys

from longrl.data.cli import main

sys.exit(main())
