"""The spread of repeated runs, shared by the claims table (claims.judge_repeats, reference.tolerances) and the repeats
summaries (repeats.summarize): mean, sample standard deviation and range, and how many standard deviations make a
tolerance."""

from __future__ import annotations

import statistics

# The tolerance a measured spread gives: K standard deviations of the N runs (a run of the same code on the same
# machine falls outside +-3 sd by chance about 3 times in 1000, for a normal spread), never below what the
# measurement can resolve (one validation image of 1000 = 0.1 point; a few percent of time is timer and start-up).
SD_MULTIPLE = 3.0
FLOOR = {"accuracy_points": 0.2, "time_relative": 0.05}


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
