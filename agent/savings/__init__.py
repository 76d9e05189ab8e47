"""Savings against an adjusted baseline (M&V), for energy-cost custodianship (能源费用托管).

`edge-agent savings` fits a baseline per meter on a chosen baseline period of the stored daily
energy, with outdoor temperature and the China calendar (working day or closed day) as drivers,
using OpenDSM's CalTRACK daily model; prints ASHRAE Guideline 14 fit statistics with their
thresholds; and reports avoided energy, cost, standard coal and CO2 per month, quarter or year,
as text, CSV and one self-contained HTML file. docs/savings.md has the method and its sources.

Modules, each holding one thing:

- ``plan``: the M&V plan (meters, temperature source, thresholds, tariffs, adjustments);
- ``daily``: daily energy, temperature and day types read from a copy of the data directory;
- ``sufficiency``: the data sufficiency rules over the baseline period;
- ``stats``: ASHRAE Guideline 14 statistics and fractional savings uncertainty;
- ``model``: the only module that imports OpenDSM (and pandas): fit and predict;
- ``tariffs``: the price of a kWh or m³ (flat, or time-of-use 尖峰平谷);
- ``report``: baselines and savings by period, as text and CSV;
- ``html``: the same as one HTML file with inline SVG charts;
- ``command``: the CLI glue.

The running service never imports this package (a test holds it): OpenDSM's dependency tree is
about 1.2 GB and takes seconds to import, which a gateway's service must not carry.
"""
