"""The drills run as pytest tests through the drdrill plugin (harness.pytest_plugin)."""
