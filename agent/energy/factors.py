"""Conversion factors to standard coal (tce) and CO2, each with its year and its source.

Every converted figure the agent produces names the factor that made it (`Factor.label`), because
two reports of the same building differ by 2.5x depending on whether electricity is counted by
its calorific equivalent (当量值) or by the coal burnt to generate it (等价值).

Defaults (each configurable, with its year and the public source it comes from):

- Electricity, calorific equivalent (当量值): 0.1229 kgce/kWh, GB/T 2589-2020 (综合能耗计算通则)
  appendix of reference coefficients: 1 kWh = 860 kcal against 7000 kcal per kgce
  (860 / 7000 = 0.12286). Computed in SI units, 3.6 MJ / 29.3076 MJ = 0.12284, which rounds to
  0.1228: the published 0.1229 comes from the kilocalorie definition, so keep 0.1229.
- Electricity, equivalent value (等价值): the year's average coal consumption of thermal power
  supply (about 0.30 kgce/kWh), published yearly by the statistics bureau; no default, because a
  wrong year is worse than none: a site that reports by 等价值 must state the year's figure.
- Natural gas: 1.2143 kgce/m³, the reference coefficient for gas-field natural gas of
  35 544 kJ/m³ (8500 kcal/m³) in the statistics bureau's table; GB/T 2589 gives 1.1000-1.3300
  kgce/m³ for natural gas by calorific value (oil-field gas 38 931 kJ/m³ is 1.3300). Where the
  gas supplier states the calorific value on the bill, use that instead.
- Grid CO2, national average electricity emission factor published by the Ministry of Ecology and
  Environment with the National Bureau of Statistics: 0.5366 kgCO2/kWh for 2022 (announcement of
  2024-12-20) and 0.5306 kgCO2/kWh for 2023 (as quoted by secondary sources: confirm against the
  ministry's announcement). The default is the latest year. The 0.5703 tCO2/MWh of the enterprise
  greenhouse-gas reporting guidance is a different series and must not be mixed in.
"""

from __future__ import annotations

from pydantic import Field

from agent.core.configbase import ConfigModel

__all__ = [
    "ELECTRICITY_CALORIFIC",
    "GRID_CO2_2022",
    "GRID_CO2_2023",
    "NATURAL_GAS_TCE",
    "Factor",
]


class Factor(ConfigModel):
    """One conversion factor: a value per unit of energy, with its year and source."""

    name: str = Field(min_length=1)
    """What the factor is, e.g. "electricity calorific equivalent (当量值)"."""
    value: float = Field(gt=0)
    """The factor: kilograms of standard coal (kgce) or of CO2 per unit of the meter."""
    unit: str = Field(pattern=r"^(kgce|kgCO2)/(kWh|m3|t|MJ|GJ)$")
    """kgce/kWh, kgce/m3, kgCO2/kWh, ...: what the factor converts from and to."""
    year: int = Field(ge=1990, le=2100)
    """The year the factor belongs to (emission factors change every year)."""
    source: str = Field(min_length=1)
    """Where the value comes from (standard, announcement), quoted on every figure it makes."""

    @property
    def is_coal(self) -> bool:
        return self.unit.startswith("kgce/")

    @property
    def per_unit(self) -> str:
        """The energy unit the factor applies to (kWh, m3, ...)."""
        return self.unit.split("/", 1)[1]

    @property
    def label(self) -> str:
        """How a figure names the factor that produced it."""
        return f"{self.value:g} {self.unit} ({self.name}, {self.year}; {self.source})"


ELECTRICITY_CALORIFIC = Factor(
    name="electricity calorific equivalent (当量值)",
    value=0.1229,
    unit="kgce/kWh",
    year=2020,
    source="GB/T 2589-2020 reference coefficients, 860 kcal/kWh / 7000 kcal/kgce",
)
NATURAL_GAS_TCE = Factor(
    name="natural gas, gas-field, 35544 kJ/m3",
    value=1.2143,
    unit="kgce/m3",
    year=2020,
    source="statistics bureau reference coefficient; GB/T 2589-2020 range 1.1000-1.3300",
)
GRID_CO2_2022 = Factor(
    name="national average grid electricity CO2",
    value=0.5366,
    unit="kgCO2/kWh",
    year=2022,
    source="MEE and NBS announcement of the 2022 electricity CO2 emission factors, 2024-12-20",
)
GRID_CO2_2023 = Factor(
    name="national average grid electricity CO2",
    value=0.5306,
    unit="kgCO2/kWh",
    year=2023,
    source="MEE and NBS 2023 electricity CO2 emission factors (secondary sources; confirm)",
)
