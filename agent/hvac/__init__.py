"""HVAC schedules within the national indoor temperature limits.

Modules, each holding one thing:

- ``program``: the ``hvac:`` section of the site config (zones, programmes, season, calendar,
  policy limits);
- ``calendar``: working days, public holidays and make-up workdays (调休);
- ``policy``: the limits every setpoint is clamped to, whatever its source;
- ``state``: the pure computation of a zone's wanted state and of the schedule's boundaries;
- ``overrides``: temporary overrides and the book that holds them;
- ``commands``: validation of override commands (MQTT or the CLI) into replies;
- ``clock``: the wall/monotonic clock pair, the monotone schedule clock, clock trust;
- ``controller``: the async loop that reads, writes and verifies the zone controllers;
- ``preview``: ``edge-agent schedule preview``;
- ``spool``: the local command drop used by ``edge-agent override`` and ``edge-agent pulses set``.

This package imports nothing eagerly: ``agent.config.model`` imports ``agent.hvac.program``.
"""
