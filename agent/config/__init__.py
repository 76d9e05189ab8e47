"""The site config: YAML in, validated frozen pydantic models out.

Import from the submodules (``agent.config.model``, ``agent.config.loader``); this package
imports nothing eagerly because the Modbus driver's spec models build on ``agent.core.configbase``.
"""
