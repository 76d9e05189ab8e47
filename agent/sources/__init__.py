"""The field sources composed: the registry of drivers, the one interval poller, saved state."""
