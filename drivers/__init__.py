"""Device protocols: each driver turns a device into readings (Modbus now; BLE and GPIO later)."""
