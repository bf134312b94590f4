"""`python -m harness.cli` is `drdrill`."""

import sys

from harness.cli import main

sys.exit(main())
