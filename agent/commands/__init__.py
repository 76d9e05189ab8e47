"""Commands from upstream (MQTT) and the local CLI, whatever they ask for.

Modules, each holding one thing:

- ``envelope``: JSON in, the fields every command has (``id``, ``expires``, ``sender``), the
  reply shape, and ``Refused``;
- ``memory``: the spent ids (replays refused, kept in the store) and the per-sender quota;
- ``signature``: HMAC-SHA256 over the RFC 8785 canonical form, and the secret file;
- ``path``: the command path: checked, recorded, then applied; the kinds plug into it;
- ``counters``: the ``set_counter`` kind (pulse meters); the HVAC kind is agent.hvac.commands;
- ``reports``: the ``record_report`` kind (local CLI only): a report published as an event;
- ``config``: the ``commands:`` section of the site config.

The running agent composes them in agent.inbox. This package imports nothing eagerly and
nothing of agent.hvac (which imports it).
"""
