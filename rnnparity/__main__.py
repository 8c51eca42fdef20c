import sys

from rnnparity.cli import main

sys.exit(main())
