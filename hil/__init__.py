"""The simulated building (and, later, the hardware-in-the-loop rig).

- `hil.building`: the physics of a three-zone office in Jingzhou with rooftop PV (no I/O);
- `hil.devices`: the register maps its meters, zone controller and inverter serve (`point_maps()`);
- `hil.server`: `SimulatedBuilding`, the buses as pymodbus TCP servers on loopback, with faults;
- `python -m hil`: run it until Ctrl-C.
"""
