"""Known answers and failure cases of the validation judgements (vvuq_twin.validation.judge)."""

import numpy as np
import pytest

from vvuq_twin.validation import MetricInputError, coverage_test, judge_predictive, median_bias_test


def _rates(make, n_rep=200, **kw):
    """Fraction of replications with each status."""
    g = np.random.default_rng(0)
    out = []
    for _ in range(n_rep):
        y, d = make(g)
        out.append(judge_predictive(y, d, rng=int(g.integers(1 << 30)), **kw).status)
    out = np.asarray(out)
    return {s: float(np.mean(out == s)) for s in ("PASS", "FAIL", "NOT INFORMATIVE")}


def test_calibrated_twin_passes_at_nominal_false_alarm_rate():
    # y and draws from the same N(0, 1): three checks at alpha = 0.05 each -> false alarms
    # at most ~3 x 5 % (the binomial bands are conservative)
    r = _rates(lambda g: (g.normal(size=50), g.normal(size=(1000, 50))))
    assert r["NOT INFORMATIVE"] == 0.0
    assert r["FAIL"] <= 0.15
    assert r["PASS"] >= 0.85


def test_overconfident_twin_fails():
    # predictive sd 0.5 for data of sd 1: central 90 % intervals cover 2*Phi(0.82)-1 = 0.59
    r = _rates(lambda g: (g.normal(size=50), 0.5 * g.normal(size=(1000, 50))), n_rep=100)
    assert r["FAIL"] >= 0.95


def test_biased_twin_fails_on_median_bias_even_with_good_coverage():
    # shift 0.8 sd: P(y > median) = Phi(0.8) = 0.79, coverage drops only to ~0.81
    g = np.random.default_rng(3)
    y, d = g.normal(0.8, 1.0, size=60), g.normal(size=(2000, 60))
    j = judge_predictive(y, d, rng=1)
    assert j.bias.status == "FAIL" and j.status == "FAIL"
    assert j.bias.value > j.bias.band[1]
    assert "biased low" in j.bias.note


def test_small_holdout_is_not_informative_never_pass():
    g = np.random.default_rng(4)
    j = judge_predictive(g.normal(size=8), g.normal(size=(1000, 8)), rng=2)
    assert j.coverage.status == "NOT INFORMATIVE"
    assert j.status == "NOT INFORMATIVE"
    # the binomial band for n=8 at 90 % reaches down to <= 0.7: a 70 % twin would not be caught
    c = coverage_test(g.normal(size=8), g.normal(size=(100, 8)), band="binomial")
    assert c.band[0] <= 0.7 and not c.informative


def test_binomial_band_matches_exact_quantiles():
    from scipy import stats

    g = np.random.default_rng(5)
    c = coverage_test(g.normal(size=40), g.normal(size=(100, 40)), band="binomial", level=0.9)
    assert c.band == (stats.binom.ppf(0.025, 40, 0.9) / 40, stats.binom.ppf(0.975, 40, 0.9) / 40)
    b = median_bias_test(g.normal(size=40), g.normal(size=(100, 40)), band="binomial")
    assert b.band == (14 / 40, 26 / 40)


def test_predictive_band_accounts_for_correlated_rows():
    # rows share a random offset (one unit, one series): y = u + e with u ~ N(0, 1), e ~ N(0, 0.3).
    # The binomial band assumes independence and raises false alarms far above 5 %;
    # the band of the twin's own joint predictive does not.
    def make(g):
        y = g.normal() + 0.3 * g.normal(size=40)
        d = g.normal(size=(1000, 1)) + 0.3 * g.normal(size=(1000, 40))
        return y, d

    g = np.random.default_rng(6)
    fa_bin = fa_pred = 0
    n_rep = 150
    for _ in range(n_rep):
        y, d = make(g)
        fa_bin += median_bias_test(y, d, band="binomial").status == "FAIL"
        fa_pred += median_bias_test(y, d, band="predictive", rng=int(g.integers(1 << 30))).status == "FAIL"
    assert fa_bin / n_rep > 0.5
    assert fa_pred / n_rep <= 0.12


def test_nonfinite_predictive_is_an_error_not_a_score():
    d = np.random.default_rng(7).normal(size=(100, 10))
    d[3, 2] = np.inf
    with pytest.raises(MetricInputError, match="non-finite|NaN or inf"):
        judge_predictive(np.zeros(10), d)
    with pytest.raises(MetricInputError, match="shape"):
        judge_predictive(np.zeros(9), d)


def _shared_offset(g, n=30, sd_e=0.3, shift=0.0, scale=1.0):
    """Rows sharing one random offset u ~ N(0, 1) (one unit, one series); the twin's joint
    predictive is exact unless shifted or rescaled."""
    y = shift + g.normal() + sd_e * g.normal(size=n)
    d = scale * (g.normal(size=(1000, 1)) + sd_e * g.normal(size=(1000, n)))
    return y, d


def test_pit_uniformity_with_correlated_rows_holds_its_level_only_against_the_joint_predictive():
    # known answer: the twin's predictive is the exact joint law of the hold-out, so a test at
    # alpha = 0.05 must reject about 5 % of hold-outs. The PIT values share u: the classical KS
    # test (independence) rejects far more often; the joint-predictive reference does not.
    g = np.random.default_rng(11)
    n_rep = 150
    ind = pred = 0
    for _ in range(n_rep):
        y, d = _shared_offset(g)
        j = judge_predictive(y, d, rng=int(g.integers(1 << 30)))
        assert j.uniformity["method"] == "ks-predictive"
        ind += j.uniformity["p_value_independent"] < 0.05
        pred += j.uniformity["status"] == "FAIL"
    assert ind / n_rep > 0.5
    # binomial 99.9 % upper bound of the false-alarm count at 5 % in 150 tries is 18 (12 %)
    assert pred / n_rep <= 0.12


def test_pit_uniformity_against_the_joint_predictive_still_catches_a_wrong_twin():
    # independent rows (no shared offset): a predictive shifted by 0.8 sd, or too narrow by half,
    # leaves the reference distribution of the KS statistic
    g = np.random.default_rng(12)
    for make in (lambda: (g.normal(0.8, 1.0, size=60), g.normal(size=(1000, 60))),
                 lambda: (g.normal(size=60), 0.5 * g.normal(size=(1000, 60)))):
        fails = 0
        for _ in range(40):
            y, d = make()
            fails += judge_predictive(y, d, rng=int(g.integers(1 << 30))).uniformity["status"] == "FAIL"
        assert fails / 40 >= 0.9


def test_pit_uniformity_binomial_band_is_the_classical_ks_test():
    from scipy import stats

    g = np.random.default_rng(13)
    y, d = g.normal(size=25), g.normal(size=(300, 25))
    u = judge_predictive(y, d, band="binomial", rng=0).uniformity
    pit = (d < y).mean(axis=0)
    assert u["method"] == "ks"
    assert u["p_value"] == pytest.approx(stats.kstest(pit, "uniform").pvalue, rel=1e-12)
    # the joint-predictive reference of independent rows agrees with the classical p-value
    # to Monte Carlo error (500 replicates: sd <= 0.023)
    up = judge_predictive(y, d, band="predictive", rng=0).uniformity
    assert abs(up["p_value"] - u["p_value"]) < 0.1
