"""The drills run as pytest tests through the drdrill plugin (harness.pytest_plugin)."""

import os

# The scenario library drills with drill-only tuning (`--flux-profile fast`) to keep .ci/run short.
os.environ.setdefault("DRDRILL_FLUX_PROFILE", "fast")
