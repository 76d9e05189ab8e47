"""Shipped site configs (installed as ``agent.site_configs``); the YAML files here are data."""
