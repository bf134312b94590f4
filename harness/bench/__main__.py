"""`python -m harness.bench` is `drdrill bench`."""

import sys

from harness.bench.cli import main

sys.exit(main())
