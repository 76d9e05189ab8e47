"""The simulated building (and, later, the hardware-in-the-loop rig)."""
