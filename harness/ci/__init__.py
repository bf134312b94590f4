"""The CI jobs `drdrill init` writes: a plan from preflight, then one renderer per CI."""
