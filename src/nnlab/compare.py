"""Comparing settings across seeds: runs that differ only in their seed are one setting; per metric its
mean, standard deviation, 95% confidence interval and n; and a verdict against the best setting
(Welch's t-test): "best", "worse", or "not distinguishable with n seeds".

Pure functions of numbers and run overrides (no torch, no scipy): `nnlab report` uses them.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

SEED_KEYS = ("trainer.seed", "data.source.seed")  # what a setting's runs may differ in
LEVEL = 0.05  # two-sided: a difference is called when p < LEVEL


@dataclass
class Band:
    mean: float
    std: float  # sample standard deviation (0 for one value)
    half: float  # half-width of the 95% confidence interval of the mean (t distribution; inf for one value)
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half


def band(values: Sequence[float]) -> Band | None:
    """Mean, std, 95% CI and n of the finite values; None where there is none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None
    n, mean = len(xs), statistics.fmean(xs)
    if n == 1:
        return Band(mean, 0.0, math.inf, 1)
    std = statistics.stdev(xs)
    return Band(mean, std, t_quantile(0.975, n - 1) * std / math.sqrt(n), n)


def setting_of(overrides: dict[str, str]) -> tuple:
    """The setting a run belongs to: its overrides less the seed."""
    return tuple(sorted((k, v) for k, v in overrides.items() if k not in SEED_KEYS))


def setting_names(overrides: list[dict[str, str]]) -> list[str]:
    """Each run's setting named by the overrides in which the settings differ (`init=zeros`), "" where
    none does."""
    settings = [dict(setting_of(o)) for o in overrides]
    differing = [k for k in sorted({k for s in settings for k in s}) if len({s.get(k) for s in settings}) > 1]
    return [",".join(f"{k}={s[k]}" for k in differing if k in s) for s in settings]


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test that the means of a and b are equal (1.0 where it cannot
    tell: fewer than two values on a side; 0.0 for two different constants)."""
    if len(a) < 2 or len(b) < 2:
        return 1.0
    ma, mb, va, vb = statistics.fmean(a), statistics.fmean(b), statistics.variance(a), statistics.variance(b)
    se2 = va / len(a) + vb / len(b)
    if se2 == 0:
        return 1.0 if ma == mb else 0.0
    t = (ma - mb) / math.sqrt(se2)
    df = se2**2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    return _betai(df / 2, 0.5, df / (df + t * t))


def verdict(values: Sequence[float], best: Sequence[float], higher_is_better: bool, is_best: bool) -> str:
    """ "best", "worse" (p < 0.05 and the mean on the worse side), or "not distinguishable with n seeds"."""
    if is_best:
        return "best"
    if not values:
        return "no finished run"
    said = against(values, best, higher_is_better)
    return said if said != "better" else _tied(min(len(values), len(best)))


def against(values: Sequence[float], base: Sequence[float], higher_is_better: bool) -> str:
    """A setting against a reference (`nnlab doctor`: a fix against the config as it is): "better" or
    "worse" (p < 0.05, the mean on that side), else "not distinguishable with n seeds"."""
    if values and base and welch_p(values, base) < LEVEL:
        higher = statistics.fmean(values) > statistics.fmean(base)
        return "better" if higher == higher_is_better else "worse"
    return _tied(min(len(values), len(base)))


def _tied(n: int) -> str:
    return f"not distinguishable with {n} seed{'s' if n != 1 else ''}"


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The p-quantile (p > 0.5) of Student's t distribution with df degrees of freedom, by bisection (a
    report of a thousand settings asks for the same few: remembered)."""
    lo, hi = 0.0, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1 - 0.5 * _betai(df / 2, 0.5, df / (df + mid * mid)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _betai(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (Numerical Recipes' continued fraction)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + aa * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h
