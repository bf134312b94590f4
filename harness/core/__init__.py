"""The drill itself: the recorder, the resource stack and interrupts; no I/O but the clock
(and, for the resource stack, what the releases it is given do)."""
