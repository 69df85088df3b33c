"""The tolerance a committed spread gives (common/stats.multiple), held to scipy's Student t and to a simulation: a
new run of the same code on the same machine is judged outside by chance FALSE_ALARM of the time, whatever N."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from xeontl.common import stats


@pytest.mark.parametrize("df", [*range(1, 40), 50, 80, 120, 500, 5000])
def test_the_t_quantile_is_scipys(df):
    want = scipy_stats.t.ppf(1 - stats.FALSE_ALARM / 2, df)
    assert stats.t_quantile(df) == pytest.approx(want, rel=3e-4)


@pytest.mark.parametrize("n", [2, 3, 5, 6, 10, 30])
def test_a_new_run_of_the_same_spread_is_outside_as_often_as_promised(n):
    """N committed runs and one new run, all from one normal spread, 400000 times (a fixed seed): the new run falls
    outside mean +- multiple(N) sd as often as FALSE_ALARM says (within 4 binomial sd); +-3 sd, the rule before,
    misses far more often for small N (5 % for N = 5)."""
    rng = np.random.default_rng(20261206 + n)
    trials = 400_000
    refs = rng.normal(size=(trials, n))
    new = rng.normal(size=trials)
    dev = np.abs(new - refs.mean(axis=1)) / refs.std(axis=1, ddof=1)
    rate = float(np.mean(dev > stats.multiple(n)))
    sd = (stats.FALSE_ALARM * (1 - stats.FALSE_ALARM) / trials) ** 0.5
    assert abs(rate - stats.FALSE_ALARM) < 4 * sd, rate
    if n <= 10:
        assert float(np.mean(dev > 3.0)) > 3 * stats.FALSE_ALARM


@pytest.mark.parametrize("bad", [0, 1])
def test_a_spread_of_fewer_than_two_runs_has_no_multiple(bad):
    with pytest.raises(ValueError):
        stats.multiple(bad)


@pytest.mark.parametrize("d1,d2", [(1, 1), (2, 5), (4, 24), (5, 25), (5, 30), (9, 200), (30, 3)])
def test_the_f_distributions_tail_is_scipys(d1, d2):
    """stats.f_sf (reference.varies_alike's gate) against scipy's F, from the body to far in the tail."""
    for f in (0.01, 0.5, 1.0, 2.65, 3.97, 9.5, 40.0, 1e4):
        assert stats.f_sf(f, d1, d2) == pytest.approx(scipy_stats.f.sf(f, d1, d2), rel=1e-9, abs=1e-15), f
