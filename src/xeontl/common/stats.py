"""The spread of repeated runs, shared by the claims table (claims.judge_repeats, reference.tolerances) and the repeats
summaries (repeats.summarize): mean, sample standard deviation and range, and how many standard deviations make a
tolerance."""

from __future__ import annotations

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
