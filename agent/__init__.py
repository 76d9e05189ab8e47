"""Building Edge Agent: the gateway service of a public building's energy programme."""

__version__ = "0.1.0"
