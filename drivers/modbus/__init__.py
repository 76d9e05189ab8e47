"""Modbus TCP and RTU: point specs, register codec, buses and device pollers."""
