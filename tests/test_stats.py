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


@pytest.mark.parametrize("d1,d2", [(1, 1), (4, 0.5), (2, 5), (4, 24), (5, 25), (5, 30), (9, 200), (30, 3)])
def test_the_f_distributions_tail_is_scipys(d1, d2):
    """stats.f_sf (reference.varies_alike's gate) against scipy's F, from the body to far in the tail."""
    for f in (0.01, 0.5, 1.0, 2.65, 3.97, 9.5, 40.0, 1e4):
        assert stats.f_sf(f, d1, d2) == pytest.approx(scipy_stats.f.sf(f, d1, d2), rel=1e-9, abs=1e-15), f


def limma_prior(variances):
    """limma's fitFDist (Smyth 2004; limma R/fitFDist.R: the method of moments on log s2, without covariates),
    transcribed on scipy's digamma, trigamma and a root finder: the oracle of stats.prior_variance."""
    import math

    from scipy import optimize, special

    e = [math.log(s2) - special.digamma(df / 2) + math.log(df / 2) for s2, df in variances]
    mean = sum(e) / len(e)
    evar = sum((x - mean) ** 2 for x in e) / (len(e) - 1) - sum(special.polygamma(1, df / 2)
                                                               for _, df in variances) / len(e)
    if evar <= 0:
        return math.exp(mean), math.inf
    half = optimize.brentq(lambda x: special.polygamma(1, x) - evar, 1e-8, 1e8, xtol=1e-14)
    return math.exp(mean + special.digamma(half) - math.log(half)), 2 * half


@pytest.mark.parametrize("x", [0.01, 0.05, 0.5, 1.0, 2.5, 9.99, 10.0, 47.3, 1e4])
def test_the_polygammas_are_scipys(x):
    """stats.digamma, trigamma and tetragamma (the moderated spread's prior) against scipy.special."""
    from scipy import special

    assert stats.digamma(x) == pytest.approx(special.digamma(x), rel=1e-12, abs=1e-12)
    assert stats.trigamma(x) == pytest.approx(special.polygamma(1, x), rel=1e-12)
    assert stats.tetragamma(x) == pytest.approx(special.polygamma(2, x), rel=1e-11)


@pytest.mark.parametrize("y", [1e-7, 1e-3, 0.2, 1.0, 4.0, 100.0, 1e8])
def test_trigamma_inverse_inverts_scipys_trigamma(y):
    from scipy import special

    assert special.polygamma(1, stats.trigamma_inverse(y)) == pytest.approx(y, rel=1e-6)


PRIORS = {  # case -> [(s2, df), ...]
    "the committed kinds' time ratio (2026-12-07)": [(0.05 ** 2, 5), (0.047 ** 2, 5), (0.051 ** 2, 5),
                                                     (0.024 ** 2, 11), (0.074 ** 2, 5), (0.10 ** 2, 5)],
    "alike: the prior's df infinite": [(0.05 ** 2, 5), (0.051 ** 2, 5), (0.049 ** 2, 5)],
    "one kind far noisier": [(0.01 ** 2, 4), (0.011 ** 2, 4), (0.6 ** 2, 4)],
    "mixed degrees of freedom": [(0.02 ** 2, 1), (0.08 ** 2, 20), (0.03 ** 2, 3), (0.05 ** 2, 7)],
}


@pytest.mark.parametrize("case", list(PRIORS))
def test_the_prior_is_limmas(case):
    """stats.prior_variance against limma's fitFDist on scipy (limma_prior)."""
    import math

    s0, d0 = stats.prior_variance(PRIORS[case])
    w0, e0 = limma_prior(PRIORS[case])
    assert s0 == pytest.approx(w0, rel=1e-6)
    assert (math.isinf(d0) and math.isinf(e0)) or d0 == pytest.approx(e0, rel=1e-6), (d0, e0)


def test_the_prior_recovers_the_model_it_assumes():
    """Variances drawn from the model the moderated spread assumes (each kind's sigma2 = s0^2 d0 / chi2_d0, its s2 =
    sigma2 chi2_d / d): the estimate finds s0^2 and d0 again (within sampling, over 4000 kinds)."""
    rng = np.random.default_rng(7)
    s0, d0, d = 0.05 ** 2, 8.0, 5
    sigma2 = s0 * d0 / rng.chisquare(d0, 4000)
    got_s0, got_d0 = stats.prior_variance([(v * rng.chisquare(d) / d, d) for v in sigma2])
    assert got_s0 == pytest.approx(s0, rel=0.05) and got_d0 == pytest.approx(d0, rel=0.2), (got_s0, got_d0)
