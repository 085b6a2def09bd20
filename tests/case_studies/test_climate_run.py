"""The climate case study: its building blocks against independent computations, and one quick
run on the real data (HadCRUT5 + RCMIP forcing from ``fair`` 1.6) checked against published
values, binomial bands and independent recomputations.

Fast tests (no run): the NumPy evaluation of the twin (:mod:`case_studies.climate.emulator`)
against the RK4 integrator and PyMC's HSGP, the exact chance-constrained decision, the
design estimator on a linear-Gaussian problem with a closed form, bad input.

Slow tests share one quick run (about three minutes on 2 busy cores):

- verification: RK4 order, RK4 vs the exact solution, the NumPy twin vs ``predict`` and vs
  ``replicate``, SBC ranks uniform (and the verdict recomputed from the saved ranks);
- validation: hold-out coverage inside its binomial band; ECS and TCR inside the IPCC AR6 very
  likely ranges (2-5 K, 1.2-2.4 K); the Earth energy imbalance 2006-2018 inside the AR6 very
  likely range 0.52-1.06 W m-2 (not used in the calibration); two-layer time scales of the
  order of the CMIP5 fits (Geoffroy et al. 2013a: about 4 and 250 years);
- scenario worlds ordered, SSP2-4.5 2100 warming in the AR6 very likely 2081-2100 range;
- decision exactly on the chance constraint, the buffered decision more cautious;
- sensitivity: Shapley effects sum to one, the feedback parameter dominates;
- design: the goal-oriented choice beats the median candidate by more than its standard
  error, and five years beat any single year;
- assimilation: SMC agrees with plain importance weighting, and the warm 2013-2017 years raise
  ECS and tighten the admissible forcing path;
- the same seed gives the same numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from _report import report_json as _json, report_table as _table
import xarray as xr

from case_studies._data import DataDirectoryError
from case_studies.climate import emulator as E
from case_studies.climate import loop
from case_studies.climate.model import GEOFFROY_CMIP5_MEAN, two_layer_ebm

G = GEOFFROY_CMIP5_MEAN


@pytest.fixture(scope="module")
def climate(data_dir, tmp_path_factory):
    pytest.importorskip("fair")
    from case_studies.climate.run import run

    return run(data_dir, tmp_path_factory.mktemp("climate"), seed=1, quick=True)


def _params(n: int = 1) -> dict[str, np.ndarray]:
    return {k: np.full(n, float(G[k])) for k in ("lam", "gamma", "C", "C_d")} | {"kappa": np.ones(n)}


# ================================================================== fast: building blocks
def test_heat_content_and_temperature_match_rk4():
    """Closed-form convolution (T and H = C T + C_d T_d) vs the RK4 integrator of model.py."""
    rng = np.random.default_rng(0)
    forcing = np.cumsum(rng.normal(0.02, 0.1, 120))
    p = _params()
    ens = E.ensemble(forcing, p, heat=True)
    r = two_layer_ebm(forcing, G["lam"], G["gamma"], G["C"], G["C_d"], n_substeps=16)
    T, Td = r["T"].eval(), r["T_d"].eval()
    np.testing.assert_allclose(ens["T"][0], T, atol=1e-8)
    np.testing.assert_allclose(ens["H"][0], G["C"] * T + G["C_d"] * Td, atol=1e-6)


def test_mean_imbalance_is_mean_of_forcing_minus_feedback():
    """dH/dt = F - lambda T: the period mean of the imbalance from a fine RK4 path (midpoint rule)."""
    years = np.arange(1750, 1850)
    forcing = np.linspace(0.0, 2.0, years.size)
    p = _params()
    got = E.mean_imbalance(years, forcing, p, (1800, 1819))[0]
    sub = 200  # 200 RK4 steps per year; N at each substep end, averaged
    fine = np.repeat(forcing, sub)
    r = two_layer_ebm(fine, G["lam"], G["gamma"], G["C"], G["C_d"], n_substeps=1, dt=1.0 / sub)
    N = fine - G["lam"] * r["T"].eval()
    Nm = np.concatenate([[forcing[0]], N])  # N at substep boundaries, from rest
    mid = 0.5 * (Nm[1:] + Nm[:-1])  # trapezoid over each substep
    i0, i1 = (1800 - 1750) * sub, (1820 - 1750) * sub
    assert got == pytest.approx(mid[i0:i1].mean(), abs=2e-4)
    with pytest.raises(ValueError, match="last >= first"):
        E.mean_imbalance(years, forcing, p, (1820, 1800))


def test_warming_functional_equals_convolution():
    rng = np.random.default_rng(1)
    years = np.arange(1750, 2101)
    forcing = np.cumsum(rng.normal(0.01, 0.05, years.size))
    p = {k: v * rng.uniform(0.7, 1.3, 6) for k, v in _params(6).items()}
    w = E.warming_functional(years, forcing, 2100)
    direct = E.anomaly_at(years, forcing, p, 2100)[:, 0]
    via = np.array([p["kappa"][i] * E.impulse(years.size, *(p[k][i] for k in ("lam", "gamma", "C", "C_d"))) @ w
                    for i in range(6)])
    np.testing.assert_allclose(via, direct, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="outside the forcing years"):
        E.anomaly_at(years, forcing, p, 2200)


def test_hsgp_basis_matches_pymc():
    """Frozen HSGP basis and Matérn-3/2 spectral density vs pm.gp.HSGP.prior_linearized."""
    import pymc as pm

    x_cal = np.arange(1850, 2013, dtype=float)
    b = E.HSGPBasis.from_inputs(x_cal, 20, 1.5)
    assert b.center == 1931.0 and b.L == pytest.approx(121.5)
    ls, eta = 17.0, 0.08
    gp = pm.gp.HSGP(m=[20], c=1.5, cov_func=eta**2 * pm.gp.cov.Matern32(1, ls=ls))
    phi, sqrt_psd = gp.prior_linearized(x_cal[:, None])
    np.testing.assert_allclose(b.phi(x_cal), phi.eval(), atol=1e-12)
    np.testing.assert_allclose(b.sqrt_psd(np.array([ls]), np.array([eta]))[0], sqrt_psd.eval(), rtol=1e-10)
    assert b.inside([2012.0, 2050.0]).all() and not b.inside([2100.0]).any()


def test_cmip5_mean_parameters_consistent_with_published_time_scales():
    """The CMIP5 multi-model mean two-layer parameters (Geoffroy et al. 2013a) give the fast and
    slow time scales and mode weights used for the AR6 WG1 ch. 6 figures (4.1 and 249 years,
    0.587/0.413) within 10% (means of per-model values differ from values of the mean model)."""
    from case_studies.climate.run import GEOFFROY_TIMESCALES

    tau_f, tau_s, _, _, a_f, a_s = E.modes(G["lam"], G["gamma"], G["C"], G["C_d"])
    assert tau_f == pytest.approx(GEOFFROY_TIMESCALES["tau_f"], rel=0.1)
    assert tau_s == pytest.approx(GEOFFROY_TIMESCALES["tau_s"], rel=0.1)
    assert a_f == pytest.approx(0.587, rel=0.05) and a_f + a_s == pytest.approx(1.0)


def test_decide_is_exact_on_the_sample():
    rng = np.random.default_rng(2)
    n = 300
    w = loop.Warming2100(w0=rng.normal(1.5, 0.3, n), w1=rng.uniform(0.5, 1.5, n), delta=rng.normal(0, 0.1, n))
    d = loop.decide(w, threshold=2.0, max_prob=0.33, bounds=(-1.0, 1.5), seed=0)
    assert d.feasible and d.p_exceed <= 0.33
    # one step above s* one more draw exceeds the threshold
    assert np.mean(w.at(d.s_star + 1e-9) > 2.0) > 0.33
    # the buffered constraint (bPOE) implies the chance constraint: more cautious
    assert d.buffered_feasible and d.s_buffered <= d.s_star + 1e-9
    # cross-check bPOE at the buffered decision: CVaR_{0.67}(w - 2) <= 0
    x = np.sort(w.at(d.s_buffered) - 2.0)
    k = int(np.ceil(0.67 * n))
    assert x[k:].mean() <= 1e-6
    # infeasible: even the lowest path exceeds 2 °C for every draw
    hot = loop.Warming2100(w0=np.full(n, 5.0), w1=np.ones(n), delta=np.zeros(n))
    assert not loop.decide(hot, threshold=2.0, max_prob=0.33, bounds=(-1.0, 1.5), seed=0).feasible
    with pytest.raises(ValueError, match="w1 > 0"):
        loop.decide(loop.Warming2100(w.w0, -w.w1, w.delta), threshold=2.0, max_prob=0.33,
                    bounds=(-1.0, 1.5), seed=0)


def test_reweight_utilities_linear_gaussian_closed_form():
    """h = theta ~ N(0, 1), z = h + N(0, sd^2): EIG = goal-oriented utility about theta
    = 0.5 log(1 + 1/sd^2) (closed form); the estimators are biased low by O(1/N)."""
    rng = np.random.default_rng(3)
    theta = rng.standard_normal(2000)
    sd = 1.0
    exact = 0.5 * np.log(1 + 1 / sd**2)
    u, se, ess = loop.reweight_utilities(theta, sd, qoi=theta, rng=4)
    assert abs(u - exact) < 4 * se + 0.01
    u_p, se_p, _ = loop.reweight_utilities(theta, sd, qoi=None, rng=4)
    assert abs(u_p - exact) < 4 * se_p + 0.01
    assert ess > 100
    # a useless measurement teaches nothing
    u0, se0, _ = loop.reweight_utilities(theta, 1e3, qoi=theta, rng=4)
    assert abs(u0) < 4 * se0 + 1e-3


def test_climate_bad_input_is_refused(tmp_path):
    from case_studies.climate.run import run

    with pytest.raises(ValueError, match="holdout_years must be >= 0"):
        run(tmp_path, tmp_path, holdout_years=-1)
    with pytest.raises(ValueError, match="n_assimilate must be in 1..9"):
        run(tmp_path, tmp_path, n_assimilate=0)
    with pytest.raises(ValueError, match="n_assimilate must be in 1..4"):
        run(tmp_path, tmp_path, holdout_years=5, n_assimilate=5)
    with pytest.raises(DataDirectoryError, match="hadcrut5_global_annual.csv"):
        run(tmp_path, tmp_path / "out")


# ================================================================== slow: one quick run
@pytest.mark.slow
def test_climate_verification_and_holdout(climate):
    assert 3.7 <= climate["verification_order"] <= 4.3
    assert climate["rk4_vs_exact_K"] < 1e-3
    # the NumPy twin of steps 5-8 is the twin: vs predict and vs replicate, to round-off
    assert climate["emulator_vs_predict_K"] < 1e-8
    assert climate["replicate_vs_closed_form_K"] < 1e-8
    assert climate["sensitivity_qoi_vs_decision_K"] < 1e-8
    lo, hi = climate["coverage_band"]
    assert lo <= climate["coverage"] <= hi
    assert climate["n_holdout"] == 10 and climate["fraction_extrapolated"] == 1.0
    assert 0 < climate["crps"] < 0.15  # °C; interannual sd of GMST is about 0.1 °C


@pytest.mark.slow
def test_climate_sbc_ranks_uniform(climate):
    assert climate["sbc_n_sims"] == 12
    assert climate["sbc_passed"], climate["sbc_failed"]
    ds = xr.open_dataset(Path(climate["paths"]["html"]).parent / "sbc.nc")
    quantities = [str(q) for q in ds["quantity"].values]
    assert {"lam", "gamma", "C", "C_d", "kappa", "sigma_obs", "log_lik"} <= set(quantities)
    ranks = ds["rank"].values
    assert ranks.shape == (12, len(quantities))
    assert ranks.min() >= 0 and ranks.max() <= climate["sbc_max_rank"]
    # bands at 1 - 0.05/Q: familywise false-alarm level 5% over the Q ranked quantities
    assert climate["sbc_band_level"] == pytest.approx(1 - 0.05 / len(quantities))
    # the verdicts recomputed from the saved ranks
    from vvuq_twin.verification import rank_uniformity

    again = rank_uniformity(ranks, climate["sbc_max_rank"], quantities=quantities, prob=climate["sbc_band_level"])
    assert bool(again["band_passed"].all()) == climate["sbc_passed"]
    at95 = rank_uniformity(ranks, climate["sbc_max_rank"], quantities=quantities, prob=0.95)
    assert [q for q, ok in zip(quantities, at95["band_passed"].values) if not ok] == climate["sbc_failed_95"]
    assert 0 <= climate["sbc_dependent_replications"] <= 12


@pytest.mark.slow
def test_climate_sensitivity_in_published_ranges(climate):
    # IPCC AR6 WG1 very likely ranges: ECS 2-5 K, TCR 1.2-2.4 K
    assert 2.0 <= climate["ecs_median"] <= 5.0
    assert 1.2 <= climate["tcr_median"] <= 2.4
    assert climate["tcr_median"] < climate["ecs_median"]
    # AR6 Earth energy imbalance 2006-2018: 0.79 [0.52 to 1.06] W m-2 (not calibrated to)
    assert 0.52 <= climate["eei_median"] <= 1.06
    lo, hi = climate["eei_90"]
    assert lo < 0.79 < hi
    # CMIP5 two-layer time scales (Geoffroy et al. 2013a): about 4 and 250 years, within a factor 2
    assert 2.0 <= climate["tau_f_median"] <= 8.2
    assert 125 <= climate["tau_s_median"] <= 500


@pytest.mark.slow
def test_climate_scenario_worlds(climate):
    w = climate["warming_2100"]
    assert w["ssp126"]["median"] < w["ssp245"]["median"] < w["ssp585"]["median"]
    # AR6 very likely 2081-2100 warming for SSP2-4.5: 2.1-3.5 °C (2100 alone is a bit warmer)
    assert 2.1 <= w["ssp245"]["median"] <= 3.8
    assert w["ssp585"]["p_exceed_2C"] > 0.9
    for v in w.values():
        assert v["cvar90"] >= v["median"]
    lineage = json.loads(xr.open_dataset(Path(climate["paths"]["html"]).parent / "scenario_worlds.nc").attrs["lineage"])
    outs = [n for n in lineage["nodes"].values() if n["kind"] == "output" and n["operation"] == "replicate"]
    assert sorted(n["label"] for n in outs) == ["ssp126", "ssp245", "ssp585"]
    # each world is its own declaration (the forcing enters the simulator's identity)
    assert len({n["declaration_hash"] for n in outs}) == 3


@pytest.mark.slow
def test_climate_decision_sits_on_the_constraint(climate):
    assert climate["decision_feasible"]
    s_star = climate["path_scale"]
    assert climate["path_p_exceed"] <= 0.33
    rows = _table(_json(climate), "Exceedance probability")
    s = np.array([r["s"] for r in rows])
    prob = np.array([r["P(>2 °C)"] for r in rows])
    # exceedance grows with the forcing path; the grid brackets the exact s*
    assert np.all(np.diff(prob) >= -1e-12)
    assert np.all(prob[s <= s_star] <= 0.33) and np.all(prob[s > s_star + 1e-9] > 0.33)
    # buffered (CVaR) constraint is more cautious than the chance constraint
    assert climate["path_scale_buffered"] <= s_star


@pytest.mark.slow
def test_climate_shapley_effects(climate):
    sh = climate["shapley"]
    assert set(sh) == {"lam", "gamma", "C", "C_d", "kappa"}
    assert sum(sh.values()) == pytest.approx(1.0, abs=0.1)  # Shapley effects share Var(Y)
    # the feedback parameter (ECS = F2x / lambda) dominates 2100 warming
    assert climate["sensitivity_ranking"][0] == "lam" and sh["lam"] > 0.4
    assert 0 < climate["discrepancy_variance_share_2100"] < 0.5


@pytest.mark.slow
def test_climate_design_goal_oriented_choice(climate):
    labels = climate["design_labels"]
    u = np.array(climate["design_utility_ecs"])
    se = np.array(climate["design_utility_ecs_se"])
    best = labels.index(climate["design_best_ecs"])
    assert climate["next_measurement_utility"] == pytest.approx(u[best])
    # the goal-oriented choice beats the median candidate by more than its standard error
    assert u[best] - np.median(u) > se[best]
    # heat uptake (energy imbalance) teaches more about ECS than five more years of temperature
    assert climate["design_best_ecs"].startswith("Earth energy imbalance")
    # five years together beat every single year, for both targets
    u_par = np.array(climate["design_utility_parameters"])
    block = [i for i, lab in enumerate(labels) if "more years" in lab][0]
    singles = [i for i, lab in enumerate(labels) if lab.startswith("HadCRUT5") and i != block]
    assert u[block] > u[singles].max() and u_par[block] > u_par[singles].max()
    assert "more years" in climate["design_best_parameters"]
    # parameter EIG is capped by log(n_draws) (prior-contrastive bound)
    assert u_par.max() < np.log(400)


@pytest.mark.slow
def test_climate_assimilation_and_revalidation(climate):
    assert climate["assimilated_years"] == [2013, 2014, 2015, 2016, 2017]
    # SMC posterior vs plain importance weights of the calibration draws (independent estimate)
    assert climate["ecs_mean_after"] == pytest.approx(climate["ecs_mean_importance"], rel=0.05)
    # the record-warm 2015-2017 years raise the sensitivity and tighten the admissible path
    assert climate["ecs_median_after"] > climate["ecs_median"]
    assert climate["path_scale_after"] < climate["path_scale"]
    assert climate["p_exceed_old_path_after"] > 0.33
    # re-validation on the 5 remaining years: inside the binomial 99% band of n = 5
    from scipy import stats

    lo, hi = stats.binom.ppf([0.005, 0.995], 5, 0.9) / 5
    assert lo <= climate["coverage_after"] <= hi
    assert 0 < climate["crps_after"] < 0.2
    assert climate["decision_after"].startswith("after assimilating HadCRUT5 2013-2017")


@pytest.mark.slow
def test_climate_summary_and_report(climate):
    keys = ["case", "seed", "quick", "n_train", "n_holdout", "verification_order", "sbc_passed",
            "sbc_n_sims", "diagnostics_passed", "coverage", "coverage_band", "crps",
            "fraction_extrapolated", "sensitivity_ranking", "decision", "next_measurement",
            "next_measurement_utility", "decision_after", "coverage_after", "operation",
            "elapsed_s", "paths"]
    assert all(k in climate for k in keys)
    assert climate["case"] == "climate" and climate["quick"] is True
    doc = _json(climate)
    summ = doc["summary"]
    assert "SBC" in json.dumps(summ["verification"]) and summ["next_measurement"] == climate["next_measurement"]
    assert summ["data_provenance"][0]["checksum_verified"] is True
    html = Path(climate["paths"]["html"]).read_text()
    assert "Limitations" in html and "not done" not in html.lower()
    assert html.count("data:image/png;base64") >= 7
    out = Path(climate["paths"]["html"]).parent
    for name in ("posterior", "sbc", "sensitivity", "scenario_worlds", "posterior_after_assimilation"):
        assert (out / f"{name}.nc").is_file(), name


@pytest.mark.slow
def test_climate_prior_matches_twin_log_density(climate, data_dir):
    """The NumPy prior used by the SMC moves equals the twin's own compiled prior."""
    from case_studies.climate.data import hadcrut5_twin_data, load_forcing, load_hadcrut5
    from case_studies.climate.run import build_twin
    from vvuq_twin.assimilation import twin_log_density

    obs, _ = load_hadcrut5(data_dir)
    forc, _ = load_forcing(("ssp245",), start=1750, end=2022)
    twin = build_twin(forc["year"].values, forc["erf"].sel(scenario="ssp245").values, quick=True)
    train = hadcrut5_twin_data(obs, "train")
    post = xr.open_dataset(Path(climate["paths"]["html"]).parent / "posterior.nc")
    theta = E.draws_dict(post, loop.FREE_VARS)
    dens = twin_log_density(twin, input_names=["year"])
    dens.prepare({"x": train.x, "y": train.y})
    np.testing.assert_allclose(loop.numpy_prior(twin)(theta), dens.log_prior(theta), rtol=1e-10, atol=1e-8)


@pytest.mark.slow
def test_climate_likelihood_matches_twin_log_density_with_frozen_basis(climate, data_dir):
    """The exact NumPy likelihood of the SMC step vs the twin's own compiled likelihood
    (vvuq_twin.assimilation) on a new batch, with the HSGP basis frozen at the calibration years."""
    from case_studies.climate.data import hadcrut5_twin_data, load_forcing, load_hadcrut5
    from case_studies.climate.run import build_twin
    from vvuq_twin.assimilation import twin_log_density

    obs, _ = load_hadcrut5(data_dir)
    forc, _ = load_forcing(("ssp245",), start=1750, end=2022)
    years, forcing = forc["year"].values, forc["erf"].sel(scenario="ssp245").values
    twin = build_twin(years, forcing, quick=True)
    train, test = hadcrut5_twin_data(obs, "train"), hadcrut5_twin_data(obs, "holdout")
    post = xr.open_dataset(Path(climate["paths"]["html"]).parent / "posterior.nc")
    theta = E.draws_dict(post, loop.FREE_VARS)
    lik = E.TwinLikelihood(years, forcing, E.HSGPBasis.from_inputs(train.x[:, 0], 20, 1.5))
    dens = twin_log_density(twin.with_frozen_discrepancy(train), input_names=["year"])
    for d in ({"x": test.x[:5], "y": test.y[:5]}, {"x": train.x, "y": train.y}):
        np.testing.assert_allclose(lik(theta, d), dens.log_likelihood(theta, d), rtol=1e-9, atol=1e-8)


@pytest.mark.slow
def test_climate_same_seed_same_numbers(climate, data_dir, tmp_path):
    from case_studies.climate.run import run

    again = run(data_dir, tmp_path, seed=1, quick=True)
    keys = [k for k, v in climate.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "elapsed_s"]
    assert len(keys) >= 20
    for k in keys:
        assert again[k] == climate[k], k
    assert again["design_utility_ecs"] == climate["design_utility_ecs"]
    assert _json(climate)["sections"] == _json(again)["sections"]
