"""The energy-monitoring platform uplink: the gateway as the platform's data collector.

Modules: ``profiles`` (every protocol variant as named settings), ``envelope`` (framing and
CRC), ``crypto`` (AES and the MD5 answer), ``messages`` (XML), ``config`` (the `platform:`
section), ``session`` (one connection), ``reports`` (reports from stored intervals, the delivery
ledger), ``uplink`` (the long-running link), ``check`` (the technician's commissioning check).
"""
