"""ASHRAE Guideline 14 statistics of a baseline fit, and the uncertainty of savings.

Formulas (ASHRAE Guideline 14-2014, Measurement of Energy, Demand, and Water Savings, section
5.2.11 and Annex B; the savings uncertainty is Reddy and Claridge's, as Annex B gives it):

- CV(RMSE) = sqrt( Σ (y_i - ŷ_i)² / (n - p) ) / ȳ
- NMBE     = Σ (y_i - ŷ_i) / ( (n - p) · ȳ )
- R²       = 1 - Σ (y_i - ŷ_i)² / Σ (y_i - ȳ)²
- residual autocorrelation rho (lag 1) and effective number of points n' = n (1 - rho) / (1 + rho)
- fractional savings uncertainty, for m reporting points and savings fraction F:
  ΔS / S = 1.26 · t · CV · sqrt( (n / n') · (1 + 2 / n) · (1 / m) ) / F
  with t the two-sided Student t of the confidence level at n' - p degrees of freedom; so the
  absolute uncertainty of the savings is ΔS = 1.26 · t · CV · sqrt( (n / n') (1 + 2/n) / m ) · E,
  E the adjusted baseline energy of the reporting period.

The 1.26 factor was derived for monthly data; for daily models it may understate the
uncertainty of strongly autocorrelated residuals, which n' accounts for in part (docs/savings.md).
Pure Python: the t quantile is the Cornish-Fisher expansion (Abramowitz and Stegun 26.7.5),
accurate to 1e-3 above 5 degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from statistics import NormalDist

__all__ = ["FitStats", "fit_stats", "savings_uncertainty", "t_quantile"]


def t_quantile(confidence: float, dof: float) -> float:
    """Two-sided Student t quantile: P(|T| <= t) = confidence, for `dof` degrees of freedom."""
    if not 0 < confidence < 1:
        raise ValueError("confidence is a fraction between 0 and 1")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    if dof <= 0 or math.isinf(dof):
        return z
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / dof + g2 / dof**2 + g3 / dof**3 + g4 / dof**4


@dataclass(frozen=True, slots=True)
class FitStats:
    """Goodness of fit of a baseline over its n days with p parameters."""

    n: int
    p: int
    mean: float
    cvrmse: float
    nmbe: float
    r2: float
    rho: float  # lag-1 autocorrelation of the residuals
    n_eff: float  # n' = n (1 - rho) / (1 + rho)


def fit_stats(observed: Sequence[float], predicted: Sequence[float], p: int) -> FitStats:
    """G14 statistics of a fit (observed and predicted in day order)."""
    n = len(observed)
    if n != len(predicted) or n <= p + 1:
        raise ValueError(f"need more days than parameters + 1 ({n} days, {p} parameters)")
    mean = sum(observed) / n
    residuals = [y - f for y, f in zip(observed, predicted, strict=True)]
    sse = sum(r * r for r in residuals)
    sst = sum((y - mean) ** 2 for y in observed)
    cvrmse = math.sqrt(sse / (n - p)) / mean if mean else math.inf
    nmbe = sum(residuals) / ((n - p) * mean) if mean else math.inf
    r2 = 1 - sse / sst if sst else 0.0
    centred = [r - sum(residuals) / n for r in residuals]
    denominator = sum(r * r for r in centred)
    rho = sum(a * b for a, b in pairwise(centred)) / denominator if denominator else 0.0
    rho = min(max(rho, 0.0), 0.99)  # negative autocorrelation does not add information
    n_eff = n * (1 - rho) / (1 + rho)
    return FitStats(n, p, mean, cvrmse, nmbe, r2, rho, n_eff)


def savings_uncertainty(
    stats: FitStats, *, m: int, baseline_energy: float, confidence: float
) -> float:
    """Absolute uncertainty (same unit as the energy) of the savings over m reporting days
    whose adjusted baseline energy is `baseline_energy`, at `confidence` (two-sided)."""
    if m <= 0:
        return math.nan
    t = t_quantile(confidence, max(stats.n_eff - stats.p, 1.0))
    spread = math.sqrt((stats.n / stats.n_eff) * (1 + 2 / stats.n) / m)
    return 1.26 * t * stats.cvrmse * spread * abs(baseline_energy)
