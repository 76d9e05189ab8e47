"""Physics of a simulated office building in Jingzhou, Hubei (no I/O).

The building is small but self-consistent: outdoor weather, occupancy, three HVAC zones, rooftop
PV and base loads add up to the power through the main incoming meter, and every energy counter is
the integral of the power it meters, so the identity

    Δmain_import - Δmain_export == Δlighting + Δhvac + Δother - Δpv

holds over any interval. Simulated time runs `speed` times faster than the injected clock, so a
short demo moves the counters visibly and tests can replay a whole day in milliseconds.

Facts used:
- Jingzhou is in the hot-summer cold-winter climate zone (the zones by which GB/T 51161-2016,
  民用建筑能耗标准, sets its quotas);
- public buildings: summer indoor temperature not below 26 °C, winter not above 20 °C
  (公共建筑室内温度控制管理办法, 建科[2008]115号 Art. 3) — the HVAC defaults;
- sub-item codes 01A00 lighting and sockets, 01B00 HVAC, 01C00 power (分项能耗数据采集技术导则,
  MOHURD 2008; JGJ/T 285-2014);
- Chinese low-voltage supply is 220 V phase / 380 V line at 50 Hz (GB/T 156 standard voltages).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

from agent.core.clock import system_clock

__all__ = [
    "ZONE_NAMES",
    "Building",
    "EnergyCounters",
    "HvacMode",
    "ThreePhase",
    "Zone",
]

ZONE_NAMES = ("zone1", "zone2", "zone3")

# --- site -------------------------------------------------------------------------------------
LATITUDE_DEG = 30.33  # Jingzhou
LONGITUDE_DEG = 112.24
STANDARD_MERIDIAN_DEG = 120.0  # China Standard Time, UTC+8
# Approximate monthly mean outdoor temperatures for Jingzhou (°C, Jan..Dec): a hot-summer
# cold-winter profile good enough for plausible loads, not a climate record.
MONTHLY_MEAN_C = (4.1, 6.6, 10.9, 17.0, 22.0, 25.9, 28.8, 28.2, 24.0, 18.4, 12.1, 6.4)
DAILY_SWING_C = 4.0  # ± around the daily mean
COLDEST_HOUR = 5.0  # local time of the daily minimum
WARMEST_HOUR = 14.0  # local time of the daily maximum

# --- occupancy and loads (kW) ---------------------------------------------------------------
OFFICE_OPEN_HOUR = 8
OFFICE_CLOSE_HOUR = 18
LIGHTING_OCCUPIED_KW = (18.0, 25.0)  # sub-item 01A00 during office hours, clamped range
LIGHTING_MEAN_OCCUPIED_KW = 21.5
LIGHTING_BASE_KW = 3.0  # emergency lighting, standby sockets
OTHER_BASE_KW = 5.0  # sub-item 01C00: lifts, pumps

# --- HVAC ------------------------------------------------------------------------------------
# Each zone is one thermal capacity C behind a conductance UA to outdoors: C/UA is the ~2 h time
# constant with which an unconditioned zone drifts toward the outdoor temperature.
ZONE_UA_KW_PER_K = 1.0
ZONE_TIME_CONSTANT_S = 2 * 3600.0
ZONE_CAPACITY_KJ_PER_K = ZONE_UA_KW_PER_K * ZONE_TIME_CONSTANT_S
ZONE_GAIN_OCCUPIED_KW = 6.0  # people, lighting and equipment heat in one zone
ZONE_GAIN_EMPTY_KW = 1.0
HVAC_CAPACITY_KW = 15.0  # thermal, per zone
HVAC_APPROACH_S = 600.0  # a running unit closes the gap to its setpoint with this time constant
COP_COOL = 3.2
COP_HEAT = 2.8
FAN_KW = 0.4  # per zone that is on, in every mode
COOL_SEASON_SETPOINT_C = 26.0  # national limit: summer not below 26 °C
HEAT_SEASON_SETPOINT_C = 20.0  # national limit: winter not above 20 °C

# --- PV --------------------------------------------------------------------------------------
PV_KWP = 30.0
PV_PERFORMANCE_RATIO = 0.75  # inverter, wiring, soiling and temperature losses
INVERTER_EFFICIENCY = 0.975
# Yangtze-valley haze and cloud: about 4 kWh/kWp on a summer day, under 2 in winter.
CLOUD_MEAN = 0.75
CLOUD_RANGE = (0.4, 1.0)

# --- electrical ------------------------------------------------------------------------------
NOMINAL_PHASE_V = 220.0
NOMINAL_FREQUENCY_HZ = 50.0
PHASE_V_OFFSETS = (1.2, -0.8, 0.4)  # a real transformer is never perfectly balanced
LIGHTING_PHASE_SHARE = (0.36, 0.31, 0.33)  # single-phase circuits spread unevenly
HVAC_PHASE_SHARE = (0.334, 0.333, 0.333)  # three-phase compressors are nearly balanced
OTHER_PHASE_SHARE = (0.30, 0.36, 0.34)
LIGHTING_PF = 0.96
HVAC_PF = 0.93
OTHER_PF = 0.88  # lifts and pumps: induction motors
MAIN_PF_RANGE = (0.92, 0.97)

# --- integration -----------------------------------------------------------------------------
MAX_STEP_S = 10.0
MAX_STEPS_PER_UPDATE = 20_000  # beyond this, steps grow: a jump of a month stays fast

# Counter readings at start: an installation that has been running for years.
INITIAL_MAIN_IMPORT_KWH = 1_234_567.8
INITIAL_MAIN_EXPORT_KWH = 2_345.6
INITIAL_LIGHTING_KWH = 456_789.1
INITIAL_HVAC_KWH = 612_345.6
INITIAL_OTHER_KWH = 301_234.5
INITIAL_PV_TOTAL_KWH = 123_456.7  # > 65535 so a 32-bit register's word order matters
INITIAL_WATER_M3 = 8_765.432

# --- water -----------------------------------------------------------------------------------
# A simulated figure, not a standard's: some 7 m3 over ten office hours (an office of about 150
# people at some 45 L each), and a trickle at night (cisterns, a small leak).
WATER_OCCUPIED_M3_PER_H = 0.7
WATER_EMPTY_M3_PER_H = 0.02


class HvacMode(enum.IntEnum):
    """Operating mode of a zone unit (the values the zone controller's mode register holds)."""

    COOL = 1
    HEAT = 2
    FAN = 3


@dataclass
class Zone:
    """One HVAC zone. Read it; change it only through Building.set_* so time is accounted."""

    name: str
    temperature: float  # °C, the physical air temperature
    setpoint: float  # °C
    mode: HvacMode
    on: bool
    thermal_kw: float = 0.0  # delivered heat, + heating / - cooling, over the last step

    @property
    def electric_kw(self) -> float:
        if not self.on:
            return 0.0
        cop = COP_HEAT if self.thermal_kw > 0 else COP_COOL
        return abs(self.thermal_kw) / cop + FAN_KW


@dataclass(frozen=True)
class EnergyCounters:
    """Cumulative energy in kWh; `other` has no meter but closes the balance."""

    main_import: float
    main_export: float
    lighting: float
    hvac: float
    other: float
    pv_total: float
    pv_daily: float
    water: float = INITIAL_WATER_M3  # m3, the main water meter


@dataclass(frozen=True)
class ThreePhase:
    """What a three-phase meter on one feed sees (powers in W, signed: + import)."""

    voltage: tuple[float, float, float]  # V, phase to neutral
    current: tuple[float, float, float]  # A
    active_power: tuple[float, float, float]  # W
    power_factor: float

    @property
    def total_active_power(self) -> float:
        return math.fsum(self.active_power)

    @property
    def apparent_power(self) -> float:
        # Arithmetic sum of the phases' VA, as meters such as the SDM630 report it.
        return math.fsum(v * i for v, i in zip(self.voltage, self.current, strict=True))

    @property
    def reactive_power(self) -> float:
        return self.apparent_power * math.sin(math.acos(self.power_factor))

    @property
    def line_voltage(self) -> tuple[float, float, float]:
        """L1-L2, L2-L3, L3-L1: phasors 120° apart give |Va - Vb| = √(Va² + Vb² + Va·Vb)."""
        a, b, c = self.voltage
        return (_line(a, b), _line(b, c), _line(c, a))


def _line(a: float, b: float) -> float:
    return math.sqrt(a * a + b * b + a * b)


class _Noise:
    """An Ornstein-Uhlenbeck process: smooth, mean-reverting noise exact for any step size."""

    def __init__(self, rng: random.Random, *, sigma: float, tau_s: float) -> None:
        self._rng = rng
        self._sigma = sigma
        self._tau = tau_s
        self.value = rng.gauss(0.0, sigma)

    def advance(self, dt: float) -> float:
        decay = math.exp(-dt / self._tau)
        spread = self._sigma * math.sqrt(1.0 - decay * decay)
        self.value = self.value * decay + spread * self._rng.gauss(0.0, 1.0)
        return self.value


# --- pure functions of local time --------------------------------------------------------------


def _hour_of_day(local: datetime) -> float:
    return local.hour + local.minute / 60 + (local.second + local.microsecond / 1e6) / 3600


def daily_mean_temperature(local: datetime) -> float:
    """Monthly means placed mid-month and interpolated linearly between them."""
    month_pos = local.month - 1 + (local.day - 1) / 30.5 - 0.5  # 0.0 = mid-January
    low = math.floor(month_pos)
    frac = month_pos - low
    return (1 - frac) * MONTHLY_MEAN_C[low % 12] + frac * MONTHLY_MEAN_C[(low + 1) % 12]


def outdoor_temperature(local: datetime) -> float:
    """Daily mean ± swing, coldest at 05:00, warmest at 14:00 (a shorter rise than fall)."""
    hour = _hour_of_day(local)
    rise = WARMEST_HOUR - COLDEST_HOUR
    if COLDEST_HOUR <= hour < WARMEST_HOUR:
        shape = -math.cos(math.pi * (hour - COLDEST_HOUR) / rise)
    else:
        since_peak = (hour - WARMEST_HOUR) % 24
        shape = math.cos(math.pi * since_peak / (24 - rise))
    return daily_mean_temperature(local) + DAILY_SWING_C * shape


def is_office_hours(local: datetime) -> bool:
    """Weekdays 08:00-18:00. Public holidays and make-up workdays are not modelled."""
    return local.weekday() < 5 and OFFICE_OPEN_HOUR <= local.hour < OFFICE_CLOSE_HOUR


def is_cooling_season(local: datetime) -> bool:
    return daily_mean_temperature(local) >= 18.0


@dataclass(frozen=True)
class _SunDay:
    sunrise_h: float  # local clock hours
    sunset_h: float
    peak_kw: float  # clear-sky AC output at solar noon


def _sun_day(local: datetime) -> _SunDay:
    """Sunrise, sunset and the clear-sky peak from the solar declination (Cooper's formula)."""
    day_of_year = local.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + day_of_year) / 365)
    lat = math.radians(LATITUDE_DEG)
    half_day_h = math.degrees(math.acos(-math.tan(lat) * math.tan(decl))) / 15
    # The site lies west of the zone's meridian, so the sun culminates after 12:00 local
    # (the equation of time, ±16 min, is ignored).
    solar_noon_h = 12.0 + (STANDARD_MERIDIAN_DEG - LONGITUDE_DEG) / 15
    noon_elevation = math.pi / 2 - lat + decl
    peak = PV_KWP * PV_PERFORMANCE_RATIO * math.sin(noon_elevation)
    return _SunDay(solar_noon_h - half_day_h, solar_noon_h + half_day_h, peak)


def clear_sky_pv_kw(local: datetime) -> float:
    """A sine arch between sunrise and sunset; zero at night."""
    sun = _sun_day(local)
    hour = _hour_of_day(local)
    if not sun.sunrise_h < hour < sun.sunset_h:
        return 0.0
    return sun.peak_kw * math.sin(math.pi * (hour - sun.sunrise_h) / (sun.sunset_h - sun.sunrise_h))


def clear_sky_pv_kwh_since_midnight(local: datetime) -> float:
    """The integral of clear_sky_pv_kw from midnight to `local` (to seed the daily yield)."""
    sun = _sun_day(local)
    length = sun.sunset_h - sun.sunrise_h
    hour = min(max(_hour_of_day(local), sun.sunrise_h), sun.sunset_h)
    fraction = (1 - math.cos(math.pi * (hour - sun.sunrise_h) / length)) / 2
    return sun.peak_kw * 2 * length / math.pi * fraction


# --- the building ------------------------------------------------------------------------------


class Building:
    """A three-zone office with rooftop PV behind one three-phase incoming meter.

    `clock` returns wall time in epoch seconds; simulated time starts at the clock's first reading
    and runs `speed` times faster. Call update() to advance the state to the current simulated
    time; readings and set_* methods refer to the state after the last update.
    """

    def __init__(
        self,
        *,
        tz: str = "Asia/Shanghai",
        clock: Callable[[], float] | None = None,
        speed: float = 1.0,
        seed: int = 0,
        zones_follow_office_hours: bool = True,
    ) -> None:
        """``zones_follow_office_hours``: the simulated units switch on at opening and off at
        closing by themselves (a building without an agent); False leaves them to the agent's
        writes (and to a test acting as the user), as when schedules run on the gateway."""
        if not speed > 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self._tz = ZoneInfo(tz)
        self._zones_follow_hours = zones_follow_office_hours
        # Wall time in epoch seconds: the caller's clock (tests pin it); by default the agent's
        # system clock, so a test run started at a chosen moment starts the building there too.
        self._clock = clock if clock is not None else system_clock().time
        self._speed = speed
        self._rng = random.Random(seed)
        self._wall_start = self._clock()
        self._t = self._wall_start
        local = self.local_time
        self._occupied = is_office_hours(local)
        self._next_midnight = self._midnight_after(local)

        self._lighting_noise = _Noise(self._rng, sigma=1.2, tau_s=300.0)
        self._other_noise = _Noise(self._rng, sigma=0.3, tau_s=120.0)
        self._cloud_noise = _Noise(self._rng, sigma=0.1, tau_s=900.0)
        self._voltage_noise = tuple(_Noise(self._rng, sigma=1.0, tau_s=60.0) for _ in range(3))
        self._frequency_noise = _Noise(self._rng, sigma=0.02, tau_s=30.0)
        self._pf_noise = _Noise(self._rng, sigma=0.01, tau_s=600.0)
        self._sensor_noise = {
            name: _Noise(self._rng, sigma=0.05, tau_s=120.0) for name in ZONE_NAMES
        }

        self._zones = {name: self._initial_zone(name, local) for name in ZONE_NAMES}
        self._lighting_kw = 0.0
        self._other_kw = 0.0
        self._pv_kw = 0.0
        self._outdoor_c = outdoor_temperature(local)
        self._energy = EnergyCounters(
            main_import=INITIAL_MAIN_IMPORT_KWH,
            main_export=INITIAL_MAIN_EXPORT_KWH,
            lighting=INITIAL_LIGHTING_KWH,
            hvac=INITIAL_HVAC_KWH,
            other=INITIAL_OTHER_KWH,
            pv_total=INITIAL_PV_TOTAL_KWH,
            pv_daily=clear_sky_pv_kwh_since_midnight(local) * CLOUD_MEAN,
        )
        self._advance(0.0)  # fill the powers for the starting instant, without accruing energy

    # ---- time ---------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Simulated time of the current state, epoch seconds."""
        return self._t

    @property
    def local_time(self) -> datetime:
        return datetime.fromtimestamp(self._t, self._tz)

    def sim_time(self) -> float:
        """Simulated time that corresponds to the clock's current reading."""
        return self._wall_start + (self._clock() - self._wall_start) * self._speed

    def update(self) -> None:
        """Integrate the state forward to sim_time(); a clock that went backwards is ignored."""
        target = self.sim_time()
        gap = target - self._t
        if gap <= 0:
            return
        steps = min(math.ceil(gap / MAX_STEP_S), MAX_STEPS_PER_UPDATE)
        dt = gap / steps
        while self._t < target:
            # Steps end exactly at local midnight so the daily PV yield resets on the dot.
            end = min(self._t + dt, target, self._next_midnight)
            if target - end < 1e-6:
                end = target  # no sliver step from float rounding
            self._advance(end - self._t)
            self._t = end
            if self._t >= self._next_midnight:
                self._energy = replace(self._energy, pv_daily=0.0)
                self._next_midnight = self._midnight_after(self.local_time)

    def _midnight_after(self, local: datetime) -> float:
        tomorrow = (local + timedelta(days=1)).date()
        return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=self._tz).timestamp()

    # ---- inputs (what the agent writes) -------------------------------------------------------

    def set_setpoint(self, zone: str, celsius: float) -> None:
        self.update()
        self._zone(zone).setpoint = float(celsius)

    def set_mode(self, zone: str, mode: HvacMode | int) -> None:
        self.update()
        self._zone(zone).mode = HvacMode(mode)

    def set_on(self, zone: str, on: bool) -> None:
        self.update()
        self._zone(zone).on = bool(on)

    def _zone(self, name: str) -> Zone:
        try:
            return self._zones[name]
        except KeyError:
            raise KeyError(f"no zone {name!r}; zones are {', '.join(ZONE_NAMES)}") from None

    # ---- readings -----------------------------------------------------------------------------

    @property
    def zones(self) -> Mapping[str, Zone]:
        return MappingProxyType(self._zones)

    def zone_sensor_temperature(self, zone: str) -> float:
        """What the zone's sensor reports: the air temperature plus a little sensor noise."""
        return self._zone(zone).temperature + self._sensor_noise[zone].value

    @property
    def occupied(self) -> bool:
        return self._occupied

    @property
    def outdoor_temperature(self) -> float:
        return self._outdoor_c

    @property
    def lighting_power_kw(self) -> float:
        return self._lighting_kw

    @property
    def hvac_power_kw(self) -> float:
        return math.fsum(zone.electric_kw for zone in self._zones.values())

    @property
    def other_power_kw(self) -> float:
        return self._other_kw

    @property
    def pv_power_kw(self) -> float:
        return self._pv_kw

    @property
    def main_power_kw(self) -> float:
        """Net import through the incoming meter; negative while PV exports."""
        return self._lighting_kw + self.hvac_power_kw + self._other_kw - self._pv_kw

    @property
    def frequency(self) -> float:
        return NOMINAL_FREQUENCY_HZ + self._frequency_noise.value

    @property
    def phase_voltages(self) -> tuple[float, float, float]:
        v1, v2, v3 = (
            NOMINAL_PHASE_V + offset + noise.value
            for offset, noise in zip(PHASE_V_OFFSETS, self._voltage_noise, strict=True)
        )
        return (v1, v2, v3)

    def energy(self) -> EnergyCounters:
        return self._energy

    def main_feed(self) -> ThreePhase:
        """The incoming supply: every load on its phases, PV spread evenly by its inverter."""
        lighting = _split(self._lighting_kw, LIGHTING_PHASE_SHARE)
        hvac = _split(self.hvac_power_kw, HVAC_PHASE_SHARE)
        other = _split(self._other_kw, OTHER_PHASE_SHARE)
        pv = self._pv_kw / 3
        phase_kw = tuple(lighting[i] + hvac[i] + other[i] - pv for i in range(3))
        low, high = MAIN_PF_RANGE
        pf = min(max(0.945 + self._pf_noise.value, low), high)
        return self._feed((phase_kw[0], phase_kw[1], phase_kw[2]), pf)

    def lighting_feed(self) -> ThreePhase:
        return self._feed(_split(self._lighting_kw, LIGHTING_PHASE_SHARE), LIGHTING_PF)

    def other_feed(self) -> ThreePhase:
        """Lifts and pumps (the power sub-item, 01C00)."""
        return self._feed(_split(self._other_kw, OTHER_PHASE_SHARE), OTHER_PF)

    @property
    def water_flow_m3_per_h(self) -> float:
        return WATER_OCCUPIED_M3_PER_H if self._occupied else WATER_EMPTY_M3_PER_H

    def hvac_feed(self) -> ThreePhase:
        return self._feed(_split(self.hvac_power_kw, HVAC_PHASE_SHARE), HVAC_PF)

    def _feed(self, phase_kw: tuple[float, float, float], pf: float) -> ThreePhase:
        volts = self.phase_voltages
        watts = (phase_kw[0] * 1000, phase_kw[1] * 1000, phase_kw[2] * 1000)
        i1, i2, i3 = (abs(p) / (v * pf) for p, v in zip(watts, volts, strict=True))
        return ThreePhase(voltage=volts, current=(i1, i2, i3), active_power=watts, power_factor=pf)

    @property
    def pv_dc_voltage(self) -> float:
        """MPP voltage of the strings, lower when hot; the inverter sleeps at night."""
        if self._pv_kw <= 0:
            return 0.0
        return 610.0 - 2.0 * (self._outdoor_c - 25.0)

    @property
    def pv_dc_current(self) -> float:
        volts = self.pv_dc_voltage
        return self._pv_kw / INVERTER_EFFICIENCY * 1000 / volts if volts else 0.0

    @property
    def pv_internal_temperature(self) -> float:
        return self._outdoor_c + 3.0 + 0.6 * self._pv_kw

    # ---- integration --------------------------------------------------------------------------

    def _initial_zone(self, name: str, local: datetime) -> Zone:
        cooling = is_cooling_season(local)
        setpoint = COOL_SEASON_SETPOINT_C if cooling else HEAT_SEASON_SETPOINT_C
        on = is_office_hours(local)
        # An empty building sits between outdoors and the last conditioned temperature.
        temperature = setpoint if on else (setpoint + outdoor_temperature(local)) / 2
        mode = HvacMode.COOL if cooling else HvacMode.HEAT
        return Zone(name=name, temperature=temperature, setpoint=setpoint, mode=mode, on=on)

    def _advance(self, dt: float) -> None:
        """One step of length dt ending at self._t + dt: powers at the end, energy over dt."""
        local = datetime.fromtimestamp(self._t + dt, self._tz)
        for noise in (
            self._lighting_noise,
            self._other_noise,
            self._cloud_noise,
            self._frequency_noise,
            self._pf_noise,
            *self._voltage_noise,
            *self._sensor_noise.values(),
        ):
            noise.advance(dt)
        self._follow_schedule(local)
        self._outdoor_c = outdoor_temperature(local)
        self._lighting_kw = self._lighting_load()
        self._other_kw = max(OTHER_BASE_KW + self._other_noise.value, 0.0)
        cloud = min(max(CLOUD_MEAN + self._cloud_noise.value, CLOUD_RANGE[0]), CLOUD_RANGE[1])
        self._pv_kw = clear_sky_pv_kw(local) * cloud
        for zone in self._zones.values():
            self._step_zone(zone, dt)
        self._accrue(dt / 3600)

    def _follow_schedule(self, local: datetime) -> None:
        """Switch every zone on at opening and off at closing; in between, writes stick."""
        occupied = is_office_hours(local)
        if occupied != self._occupied and self._zones_follow_hours:
            for zone in self._zones.values():
                zone.on = occupied
        self._occupied = occupied

    def _lighting_load(self) -> float:
        if self._occupied:
            low, high = LIGHTING_OCCUPIED_KW
            return min(max(LIGHTING_MEAN_OCCUPIED_KW + 2 * self._lighting_noise.value, low), high)
        return max(LIGHTING_BASE_KW + 0.1 * self._lighting_noise.value, 0.0)

    def _step_zone(self, zone: Zone, dt: float) -> None:
        """Backward-Euler step of C·dT/dt = UA·(T_out - T) + gains + Q_hvac (stable for any dt).

        A running unit asks for the heat flow that brings T toward its setpoint with time constant
        HVAC_APPROACH_S, limited by its capacity and its mode's direction.
        """
        gains = ZONE_GAIN_OCCUPIED_KW if self._occupied else ZONE_GAIN_EMPTY_KW
        cap, ua = ZONE_CAPACITY_KJ_PER_K, ZONE_UA_KW_PER_K
        t_out, t0 = self._outdoor_c, zone.temperature
        q = 0.0
        if zone.on and zone.mode is not HvacMode.FAN:
            # With dt == 0 (the starting instant) the unit just holds the present temperature.
            wanted, stored = t0, 0.0
            if dt > 0:
                wanted = zone.setpoint + (t0 - zone.setpoint) * math.exp(-dt / HVAC_APPROACH_S)
                stored = cap * (wanted - t0) / dt
            q = stored - ua * (t_out - wanted) - gains
            if zone.mode is HvacMode.COOL:
                q = min(max(q, -HVAC_CAPACITY_KW), 0.0)
            else:
                q = min(max(q, 0.0), HVAC_CAPACITY_KW)
        zone.thermal_kw = q
        if dt > 0:
            zone.temperature = (cap * t0 + dt * (ua * t_out + gains + q)) / (cap + dt * ua)

    def _accrue(self, hours: float) -> None:
        if hours <= 0:
            return
        net = self.main_power_kw * hours
        e = self._energy
        pv = self._pv_kw * hours
        self._energy = EnergyCounters(
            main_import=e.main_import + max(net, 0.0),
            main_export=e.main_export + max(-net, 0.0),
            lighting=e.lighting + self._lighting_kw * hours,
            hvac=e.hvac + self.hvac_power_kw * hours,
            other=e.other + self._other_kw * hours,
            pv_total=e.pv_total + pv,
            pv_daily=e.pv_daily + pv,
            water=e.water + self.water_flow_m3_per_h * hours,
        )


def _split(total_kw: float, shares: tuple[float, float, float]) -> tuple[float, float, float]:
    return (total_kw * shares[0], total_kw * shares[1], total_kw * shares[2])
