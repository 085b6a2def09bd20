"""Inference verification: simulation-based calibration.

Known answers with exact (conjugate Gaussian) posterior samplers, so no MCMC is needed:

- a correct hierarchical normal model passes, and over repeated seeds its simultaneous 95 %
  ECDF bands are violated no more often than the nominal 5 % (binomial bound);
- a fit whose likelihood scale is half the simulating one (overconfident posterior) fails;
- a bivariate model whose fit ignores the correlation of the observation noise: each marginal
  posterior is then the exact posterior given that coordinate's data alone, so the parameter
  ranks stay uniform (they pass), but the rank of the joint log-likelihood (Modrák et al. 2023)
  is not, and fails.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pymc as pm
import pytest
import xarray as xr
from scipy import stats

from vvuq_twin.verification import (
    SBCError,
    SBCWarning,
    check_proper_priors,
    ecdf_band,
    rank_uniformity,
    sbc,
    sbc_twin,
)

# ----------------------------------------------------------------- hierarchical normal model
J, NOBS, TAU, SIGMA = 3, 5, 0.5, 1.0
N_DRAWS = 300


def _prior_cov() -> np.ndarray:
    S = np.ones((J + 1, J + 1))  # mu ~ N(0, 1); theta_j = mu + tau * eps_j
    S[1:, 1:] += TAU**2 * np.eye(J)
    return S


def hier_simulate(rng: np.random.Generator):
    mu = rng.normal(0.0, 1.0)
    theta = rng.normal(mu, TAU, size=J)
    y = rng.normal(theta[:, None], SIGMA, size=(J, NOBS))
    return {"mu": mu, "theta": theta}, y


def hier_fit(y: np.ndarray, rng: np.random.Generator, sigma_fit: float = SIGMA):
    """Exact joint posterior of (mu, theta) by Gaussian conjugacy."""
    H = np.hstack([np.zeros((J, 1)), np.eye(J)])
    Rinv = NOBS / sigma_fit**2 * np.eye(J)
    cov = np.linalg.inv(np.linalg.inv(_prior_cov()) + H.T @ Rinv @ H)
    mean = cov @ H.T @ Rinv @ y.mean(axis=1)
    z = rng.multivariate_normal(mean, cov, size=N_DRAWS)
    return {"mu": z[:, 0], "theta": z[:, 1:]}


def hier_loglik(params, y) -> float:
    r = (y - np.asarray(params["theta"])[:, None]) / SIGMA
    return float(-0.5 * np.sum(r**2) - y.size * np.log(SIGMA * np.sqrt(2 * np.pi)))


# ------------------------------------------------------------------------ bivariate model
RHO, NB = 0.9, 10
SIG2 = np.array([[1.0, RHO], [RHO, 1.0]])
SIG2_INV = np.linalg.inv(SIG2)
LOGDET = np.linalg.slogdet(SIG2)[1]


def biv_simulate(rng: np.random.Generator):
    theta = rng.normal(size=2)
    return {"theta": theta}, rng.multivariate_normal(theta, SIG2, size=NB)


def biv_fit(y: np.ndarray, rng: np.random.Generator, ignore_correlation: bool = False):
    S = np.diag(np.diag(SIG2)) if ignore_correlation else SIG2
    Si = np.linalg.inv(S)
    cov = np.linalg.inv(np.eye(2) + NB * Si)
    mean = cov @ (NB * Si @ y.mean(axis=0))
    return {"theta": rng.multivariate_normal(mean, cov, size=N_DRAWS)}


def biv_loglik(params, y) -> float:
    r = y - np.asarray(params["theta"])
    return float(-0.5 * np.einsum("ij,jk,ik->", r, SIG2_INV, r) - 0.5 * NB * (LOGDET + 2 * np.log(2 * np.pi)))


def test_loglik_helpers_match_scipy():
    params, y = hier_simulate(np.random.default_rng(0))
    assert hier_loglik(params, y) == pytest.approx(
        stats.norm.logpdf(y, params["theta"][:, None], SIGMA).sum()
    )
    params, y = biv_simulate(np.random.default_rng(0))
    assert biv_loglik(params, y) == pytest.approx(
        stats.multivariate_normal(params["theta"], SIG2).logpdf(y).sum()
    )


# ------------------------------------------------------------------------------ known answers


@pytest.mark.filterwarnings("ignore:In . of .* replications:vvuq_twin.verification.SBCWarning")
def test_correct_hierarchical_model_passes():
    # five quantities are tested: 99% bands keep the familywise false-alarm rate below 5%
    # (the nominal per-quantity rate of the 95% bands is checked over seeds below)
    res = sbc(hier_simulate, hier_fit, 200, log_likelihood=hier_loglik, rng=11, prob=0.99)
    assert list(res.report["quantity"].values) == ["mu", "theta[0]", "theta[1]", "theta[2]", "log_lik"]
    assert res.passed, res.summary()
    assert res.ranks["rank"].dims == ("sim", "quantity")
    assert int(res.ranks["rank"].max()) <= 99 and int(res.ranks["rank"].min()) >= 0
    # thinning by (noisy) ESS estimates keeps >= 99 near-independent draws almost always
    assert float(res.ranks["independent"].mean()) >= 0.95


@pytest.mark.filterwarnings("ignore:In . of .* replications:vvuq_twin.verification.SBCWarning")
def test_band_violation_rate_is_nominal_over_repeated_seeds():
    """16 seeds x 5 quantities: violations of a 95 % simultaneous band at most binomial error."""
    fails = []
    for seed in range(16):
        res = sbc(hier_simulate, hier_fit, 100, log_likelihood=hier_loglik, rng=1000 + seed)
        fails.extend((~res.report["band_passed"].values).tolist())
    n = len(fails)
    upper = stats.binom.ppf(0.999, n, 0.05)  # one-sided 99.9 % bound for the nominal 5 %
    assert sum(fails) <= upper, f"{sum(fails)} of {n} band violations (bound {upper})"


@pytest.mark.filterwarnings("ignore:In . of .* replications:vvuq_twin.verification.SBCWarning")
def test_likelihood_scale_mismatch_fails():
    res = sbc(hier_simulate, partial(hier_fit, sigma_fit=0.5 * SIGMA), 200,
              log_likelihood=hier_loglik, rng=11)
    assert not res.passed
    assert "log_lik" in res.failed_quantities
    assert {"theta[0]", "theta[1]", "theta[2]"} <= set(res.failed_quantities)
    # overconfident posterior: true values pile up at the extreme ranks (U shape)
    r = res.ranks["rank"].sel(quantity="theta[0]").values
    assert np.mean((r < 10) | (r > 89)) > 0.3  # 0.2 expected under uniformity


def test_missing_correlation_caught_by_loglik_only():
    res = sbc(biv_simulate, partial(biv_fit, ignore_correlation=True), 200,
              log_likelihood=biv_loglik, rng=5)
    passed = dict(zip(res.report["quantity"].values, res.report["band_passed"].values))
    assert passed["theta[0]"] and passed["theta[1]"], res.summary()
    assert not passed["log_lik"], res.summary()
    assert not res.passed
    # the correct bivariate fit passes everywhere with the same seed
    ok = sbc(biv_simulate, biv_fit, 200, log_likelihood=biv_loglik, rng=5)
    assert ok.passed, ok.summary()


def test_band_has_nominal_simultaneous_coverage():
    """Independent check of the band: uniform ranks leave it in about 5 % of replicates."""
    L, n, reps = 49, 100, 600
    z, lo, hi = ecdf_band(n, L, prob=0.95)
    idx = np.round(z * (L + 1)).astype(int)
    rng = np.random.default_rng(3)
    ranks = rng.integers(0, L + 1, size=(reps, n))
    ecdf = (ranks[:, :, None] < idx[None, None, :]).mean(axis=1)
    out = ((ecdf < lo - 1e-12) | (ecdf > hi + 1e-12)).any(axis=1).mean()
    se = np.sqrt(0.05 * 0.95 / reps)
    assert abs(out - 0.05) < 3.5 * se, out


def test_simulated_band_agrees_with_optimized_band():
    z, lo1, hi1 = ecdf_band(100, 49, method="optimized")
    _, lo2, hi2 = ecdf_band(100, 49, method="simulated", rng=0)
    assert np.max(np.abs(lo1 - lo2)) <= 0.02 and np.max(np.abs(hi1 - hi2)) <= 0.02


def test_rank_uniformity_flags_a_skewed_sample_and_passes_a_uniform_one():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 100, size=300)
    skewed = np.minimum(99, (rng.beta(1.5, 1.0, size=300) * 100).astype(int))
    rep = rank_uniformity(np.column_stack([uniform, skewed]), 99, quantities=["u", "s"])
    assert rep.attrs["chi2_bins"] == 20
    assert bool(rep["band_passed"].sel(quantity="u"))
    assert not bool(rep["band_passed"].sel(quantity="s"))
    assert float(rep["chi2_pvalue"].sel(quantity="s")) < 0.05
    assert float(rep["chi2_pvalue"].sel(quantity="u")) > 0.05


# -------------------------------------------------------------- reproducibility and executors


def test_same_seed_same_ranks_and_executor_does_not_matter():
    a = sbc(hier_simulate, hier_fit, 30, log_likelihood=hier_loglik, rng=4)
    b = sbc(hier_simulate, hier_fit, 30, log_likelihood=hier_loglik, rng=4)
    with ThreadPoolExecutor(max_workers=2) as ex:
        c = sbc(hier_simulate, hier_fit, 30, log_likelihood=hier_loglik, rng=4, executor=ex)
    np.testing.assert_array_equal(a.ranks["rank"].values, b.ranks["rank"].values)
    np.testing.assert_array_equal(a.ranks["rank"].values, c.ranks["rank"].values)
    d = sbc(hier_simulate, hier_fit, 30, log_likelihood=hier_loglik, rng=5)
    assert not np.array_equal(a.ranks["rank"].values, d.ranks["rank"].values)


def test_derived_quantities_and_var_names():
    res = sbc(
        hier_simulate, hier_fit, 40, log_likelihood=hier_loglik, rng=2, var_names=["mu"],
        derived={"spread": lambda p, y: float(np.ptp(p["theta"]))},
    )
    assert list(res.report["quantity"].values) == ["mu", "log_lik", "spread"]


def test_result_roundtrips_netcdf(tmp_path):
    res = sbc(hier_simulate, hier_fit, 30, log_likelihood=hier_loglik, rng=4)
    path = tmp_path / "sbc.nc"
    res.to_dataset().to_netcdf(path, engine="h5netcdf")
    back = xr.load_dataset(path, engine="h5netcdf")
    np.testing.assert_array_equal(back["rank"].values, res.ranks["rank"].values)
    assert "PASS" in res.summary() or "FAIL" in res.summary()


def test_too_few_draws_warns():
    def short_fit(y, rng):
        return {k: v[:120] for k, v in hier_fit(y, rng).items()}

    with pytest.warns(SBCWarning, match="near-independent"):
        sbc(hier_simulate, short_fit, 20, log_likelihood=hier_loglik, rng=1, thin=2)


def test_missing_log_likelihood_warns():
    with pytest.warns(SBCWarning, match="log_likelihood"):
        sbc(hier_simulate, hier_fit, 10, rng=1)


# ---------------------------------------------------------------------------- bad input


def test_fit_missing_a_parameter_is_named():
    def bad_fit(y, rng):
        return {"mu": hier_fit(y, rng)["mu"]}

    with pytest.raises(SBCError, match="theta"):
        sbc(hier_simulate, bad_fit, 5, log_likelihood=hier_loglik, rng=1)


def test_fit_with_wrong_shape_is_named():
    def bad_fit(y, rng):
        d = hier_fit(y, rng)
        return {"mu": d["mu"], "theta": d["theta"][:, :2]}

    with pytest.raises(SBCError, match=r"shape \(2,\).*\(3,\)"):
        sbc(hier_simulate, bad_fit, 5, log_likelihood=hier_loglik, rng=1)


def test_failing_fit_raises_instead_of_dropping():
    def flaky_fit(y, rng):
        if y.mean() > 0:
            raise RuntimeError("sampler diverged")
        return hier_fit(y, rng)

    with pytest.raises(SBCError, match="replications failed.*sampler diverged.*biases"):
        sbc(hier_simulate, flaky_fit, 10, log_likelihood=hier_loglik, rng=1)


@pytest.mark.parametrize("kw, msg", [({"n_sims": 1}, "n_sims"), ({"thin": 0}, "thin"),
                                     ({"max_rank": 0}, "max_rank")])
def test_bad_settings(kw, msg):
    args = {"n_sims": 10, **kw}
    n = args.pop("n_sims")
    with pytest.raises(ValueError, match=msg):
        sbc(hier_simulate, hier_fit, n, log_likelihood=hier_loglik, **args)


def test_improper_prior_model_is_refused():
    with pytest.raises(SBCError, match=r"\['a'\].*improper.*proper prior"):
        with pm.Model() as m:
            pm.Flat("a")
            pm.Normal("y", 0, 1, observed=[0.1])
        check_proper_priors(m)


class _FlatTwin:
    """Minimal stand-in with the Twin interface sbc_twin uses before calibrating."""

    name = "flat"
    parameter_names = ["theta"]

    def build_model(self, data, check=True):
        with pm.Model() as m:
            theta = pm.Flat("theta")
            pm.Normal("y", theta, 1.0, observed=np.asarray(data.y))
        return m


def test_sbc_twin_with_improper_prior_is_refused():
    from vvuq_twin import TwinData

    data = TwinData(x=np.linspace(0, 1, 5), y=np.zeros(5))
    with pytest.raises(SBCError, match="improper.*Normal\\(0, 10\\)"):
        sbc_twin(_FlatTwin(), data, 10, rng=0)


def test_sbc_twin_with_real_twin_flat_prior_is_refused():
    from vvuq_twin import Gaussian, Parameter, PytensorSimulator, Twin, TwinData
    from vvuq_twin.twin.priors import Prior

    class FlatPrior(Prior):
        def dist(self, name, **kw):
            return pm.Flat(name, **kw)

        def mean(self):
            return 0.0

    twin = Twin(
        name="flat_line",
        simulator=PytensorSimulator(lambda x, p: p["a"] * x[:, 0]),
        parameters=[Parameter("a", FlatPrior())],
        observation=Gaussian(sigma=0.1),
    )
    data = TwinData(x=np.linspace(0, 1, 5), y=np.zeros(5))
    with pytest.raises(SBCError, match=r"\['a'\].*improper"):
        sbc_twin(twin, data, 10, rng=0)


# ------------------------------------------------------------------------- twin adapter


def _line(x, p):
    return p["a"] + p["b"] * x[:, 0]


def _line_twin():
    from vvuq_twin import Gaussian, HalfNormal, Normal, Parameter, PytensorSimulator, Twin

    return Twin(
        name="line",
        simulator=PytensorSimulator(_line),
        parameters=[Parameter("a", Normal(0.0, 1.0)), Parameter("b", Normal(0.0, 1.0))],
        observation=Gaussian(sigma=HalfNormal(0.5)),
    )


def test_twin_log_likelihood_matches_scipy():
    """The adapter's joint log-likelihood equals a direct evaluation (natural-scale params)."""
    from vvuq_twin import TwinData
    from vvuq_twin.verification.twin_sbc import _TwinLogLik

    x = np.linspace(0.0, 1.0, 8)
    y = 0.3 - 0.7 * x + np.random.default_rng(0).normal(0, 0.2, size=8)
    ll = _TwinLogLik(_line_twin(), TwinData(x=x, y=np.zeros(8)))
    params = {"a": 0.25, "b": -0.6, "sigma_obs": 0.3}
    expected = stats.norm.logpdf(y, 0.25 - 0.6 * x, 0.3).sum()
    assert ll(params, TwinData(x=x, y=y)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.slow
def test_sbc_twin_linear_twin_passes():
    """End to end: prior predictive of a real twin, calibrate() per replication (PyMC NUTS)."""
    from vvuq_twin import TwinData

    twin = _line_twin()
    data = TwinData(x=np.linspace(0.0, 1.0, 8), y=np.zeros(8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sbc_twin(twin, data, 40, draws=150, tune=200, chains=2, method="pymc",
                       max_rank=19, rng=3, calibrate_kwargs={"cores": 1})
    assert list(res.report["quantity"].values) == ["a", "b", "sigma_obs", "log_lik"]
    assert res.passed, res.summary()
    assert np.all(np.isfinite(res.ranks["prior_value"].values))
    assert float(res.ranks["independent"].mean()) >= 0.9


def test_sbc_twin_hierarchical_defaults_and_one_compilation():
    """Per-unit vectors are not ranked by default; all replications share one compiled model."""
    import importlib

    import vvuq_twin as vt

    calmod = importlib.import_module("vvuq_twin.inference.calibrate")
    units = np.repeat(["A", "B", "C"], 4)
    x = np.tile(np.linspace(0.0, 1.0, 4), 3)
    twin = vt.Twin(
        "sbc_hier", vt.PytensorSimulator(lambda X, p: p["k"] * X[:, 0], name="prop"),
        [vt.Parameter("k", vt.Normal(1.0, 0.5), per_unit=True, pop_scale=vt.HalfNormal(0.3))],
        observation=vt.Gaussian(sigma=vt.HalfNormal(0.3)), hierarchy=vt.Hierarchy(),
    )
    data = vt.TwinData(x=x, y=np.zeros(x.size), unit=units)
    calmod.clear_compile_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sbc_twin(twin, data, 8, draws=100, tune=150, chains=2, max_rank=19, rng=5)
    assert list(res.report["quantity"].values) == ["k_mu", "k_sigma", "sigma_obs", "log_lik"]
    assert len(calmod._CACHE) == 1  # eight calibrations, one compilation
    assert res.ranks["rank"].shape == (8, 4)
    assert int(res.ranks["rank"].max()) <= 19
    # every calibration reported its own diagnostics (2 x 100 draws: bulk ESS < 200 is a failure)
    assert res.n_diagnosed == 8
    ess = res.ranks["diag_ess_bulk"].values
    assert np.all(np.isfinite(ess)) and np.all(np.isfinite(res.ranks["diag_rhat"].values))
    assert res.unconverged == [i for i in range(8) if res.ranks["diag_passed"].values[i] == 0]
    assert set(np.flatnonzero(ess < 200).tolist()) <= set(res.unconverged)
