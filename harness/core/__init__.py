"""The drill itself, with no I/O but the clock: scenarios as data (scenario.py)."""
