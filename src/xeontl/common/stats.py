"""The spread of repeated runs, shared by the claims table (claims.judge_repeats, reference.tolerances) and the repeats
summaries (repeats.summarize): mean, sample standard deviation and range, and how many standard deviations make a
tolerance."""

from __future__ import annotations

import math
import statistics

# The tolerance a measured spread gives: multiple(N) sample standard deviations of the N runs, so that a new run of
# the same code on the same kind of machine falls outside by chance FALSE_ALARM of the time (3 in 1000, the normal
# spread's +-3 sd), never below what the measurement can resolve (one validation image of 1000 = 0.1 point; a few
# percent of time is timer and start-up).
FALSE_ALARM = 0.0027
FLOOR = {"accuracy_points": 0.2, "time_relative": 0.05}
# Student's t quantile at 1 - FALSE_ALARM/2 for 1..7 degrees of freedom (scipy.stats.t.ppf; tests/test_stats.py
# checks them and the expansion below against it); from 8 on, the Cornish-Fisher expansion is within 0.03 %.
_T_SMALL = {1: 235.7837, 2: 19.2060, 3: 9.2187, 4: 6.6201, 5: 5.5070, 6: 4.9040, 7: 4.5300}


def t_quantile(df: int) -> float:
    """Student's t at 1 - FALSE_ALARM/2 with DF degrees of freedom (Abramowitz & Stegun 26.7.5)."""
    if df < 1:
        raise ValueError(f"degrees of freedom {df}")
    if df in _T_SMALL:
        return _T_SMALL[df]
    z = 2.9999769927034015  # the normal quantile at 1 - 0.00135
    g = ((z**3 + z) / 4, (5 * z**5 + 16 * z**3 + 3 * z) / 96, (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
         (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160)
    return z + sum(gi / df ** (i + 1) for i, gi in enumerate(g))


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for aa in (m * (b - m) * x / ((qam + 2 * m) * (a + 2 * m)),
                   -(a + m) * (qab + m) * x / ((a + 2 * m) * (qap + 2 * m))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (tests/test_stats.py holds it to scipy.special.betainc)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def f_sf(f: float, d1: int, d2: int) -> float:
    """P(F > f) for Snedecor's F with D1 and D2 degrees of freedom: how often two samples of one normal spread give a
    variance ratio as large (scipy.stats.f.sf)."""
    # I_{d2/(d2 + d1 f)}(d2/2, d1/2), not 1 - I_{d1 f/(d1 f + d2)}(d1/2, d2/2): the same, but without the cancellation
    # that made the tail 0 where it is heavy (few degrees of freedom below: F(4, 0.1) beyond 1e25 is 6 %, not 0)
    return betainc(d2 / 2, d1 / 2, d2 / (d2 + d1 * f)) if f > 0 else 1.0


def digamma(x: float) -> float:
    """psi(x) for x > 0: the recurrence up to 10, then the asymptotic series (Abramowitz & Stegun 6.3.18;
    tests/test_stats.py holds it to scipy.special.digamma)."""
    acc = 0.0
    while x < 10.0:
        acc -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return acc + math.log(x) - 0.5 / x - f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f / 132))))


def trigamma(x: float) -> float:
    """psi'(x) for x > 0: the recurrence up to 10, then the asymptotic series (A & S 6.4.12; scipy.special.polygamma(1,
    x) in tests/test_stats.py)."""
    acc = 0.0
    while x < 10.0:
        acc += 1.0 / (x * x)
        x += 1.0
    f = 1.0 / (x * x)
    return acc + 1.0 / x + f / 2 + f / x * (1 / 6 - f * (1 / 30 - f * (1 / 42 - f / 30)))


def tetragamma(x: float) -> float:
    """psi''(x) for x > 0, as trigamma (scipy.special.polygamma(2, x))."""
    acc = 0.0
    while x < 10.0:
        acc -= 2.0 / x ** 3
        x += 1.0
    f = 1.0 / (x * x)
    return acc - f - f / x - f * f * (1 / 2 - f * (1 / 6 - f * (1 / 6 - f * (3 / 10 - f * 5 / 6))))


def trigamma_inverse(y: float) -> float:
    """The x > 0 with trigamma(x) = y > 0: Newton's method on 1/trigamma, limma's trigammaInverse (Smyth 2004)."""
    if y > 1e7:
        return 1.0 / y ** 0.5
    if y < 1e-6:
        return 1.0 / y
    x = 0.5 + 1.0 / y
    for _ in range(50):
        tri = trigamma(x)
        dif = tri * (1 - tri / y) / tetragamma(x)
        x += dif
        if -dif / x < 1e-8:
            break
    return x


def prior_variance(variances: list[tuple[float, int]]) -> tuple[float, float]:
    """The prior of an empirical-Bayes moderated variance (limma's fitFDist, Smyth 2004, "Linear models and empirical
    Bayes methods for assessing differential expression"): from K sample variances (s2, df), each taken as its
    group's true variance sigma2 times chi2_df/df with the sigma2 drawn from s0^2 d0 / chi2_d0, the prior variance
    s0^2 and its degrees of freedom d0 by the method of moments on log s2. d0 is infinite (math.inf) where the
    variances spread no more than sampling alone would make them: the groups vary alike."""
    e = [math.log(s2) - digamma(df / 2) + math.log(df / 2) for s2, df in variances]
    mean = statistics.fmean(e)
    evar = sum((x - mean) ** 2 for x in e) / (len(e) - 1) - statistics.fmean(trigamma(df / 2) for _, df in variances)
    if evar <= 0:
        return math.exp(mean), math.inf
    d0 = 2 * trigamma_inverse(evar)
    return math.exp(mean + digamma(d0 / 2) - math.log(d0 / 2)), d0


def multiple(n: int) -> float:
    """How many sample standard deviations of N committed runs a new run may differ from their mean by: the 99.73 %
    prediction interval for one new value of a normal spread whose mean and sd are both estimated from the N,
    t_{N-1} x sqrt(1 + 1/N) (7.3 for N = 5, 4.3 for 10, 3.3 for 50): +-3 sample sd of 5 runs misses 5 % of new runs
    of the same code and machine, not 0.27 %."""
    if n < 2:
        raise ValueError(f"a spread needs 2 runs, got {n}")
    return t_quantile(n - 1) * (1 + 1 / n) ** 0.5


def spread(values: list[float | None]) -> dict:
    """mean, sample standard deviation, range of the values a run gave (None: a run that gave none)."""
    got = [v for v in values if v is not None]
    if not got:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None, "values": values}
    return {"n": len(got), "mean": statistics.fmean(got), "sd": statistics.stdev(got) if len(got) > 1 else 0.0,
            "min": min(got), "max": max(got), "values": values}


def shown(s: dict, fmt: str) -> str:
    if s["mean"] is None:
        return "-"
    if s["n"] == 1:
        return fmt.format(s["mean"])
    return f"{fmt.format(s['mean'])} ± {fmt.format(s['sd'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"
