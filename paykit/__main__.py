"""`python -m paykit ...` works like `paykit ...`."""

import sys

from paykit.cli import main

sys.exit(main())
