"""The tumor case study: its loop helpers against closed forms, and one quick run on the real data.

Fast tests check the building blocks of the decision loop (:mod:`case_studies.tumor.loop`)
against closed forms and refuse bad input before any computation. The slow tests share one
quick run (module fixture, about two minutes on 2 cores) on the Lewis lung carcinoma data and
check what it found against

- the RK4 order (4) and SBC rank uniformity (re-tested here from the saved ranks);
- the binomial band of the 90% hold-out coverage;
- the published structural correlation of the Gompertz parameters (R² > 0.92, Vaghi et al.
  2020, abstract), recomputed here by an independent profile-likelihood fit;
- the order-statistic answer of the chance constraint, and the superquantile bound it implies;
- the exact Shapley effects of the linearised decision quantity;
- the design utility of the chosen measurement against the median candidate, and the held-back
  data it was read from;
- the narrowing of the decision quantity's interval by the assimilated measurement, and the
  posterior mean after ``vvuq_twin.assimilation.assimilate`` against exact reweighting;
- the closed form of the inoculum effect in the scenario worlds;
- same seed -> same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _report import report_json as _json, report_table as _table

from case_studies._data import DataDirectoryError
from case_studies.tumor.loop import (
    crossing_times,
    gompertz_crossing_time,
    gompertz_individual_fits,
    importance_mean,
    imaging_day,
    linear_gaussian_shapley,
)



@pytest.fixture(scope="module")
def tumor(data_dir, tmp_path_factory):
    from case_studies.tumor.run import run

    return run(data_dir, tmp_path_factory.mktemp("tumor"), seed=1, quick=True)


# ------------------------------------------------------------------ helpers: closed forms
def test_crossing_times_match_the_gompertz_closed_form():
    rng = np.random.default_rng(0)
    log_beta = np.log(rng.uniform(0.06, 0.2, 50))
    k = rng.uniform(7.5, 9.0, 50)
    grid = np.linspace(0.0, 40.0, 4001)
    b = np.exp(log_beta)[:, None]
    log_v = k[:, None] * (1 - np.exp(-b * grid))  # V(0) = 1 mm³, no discrepancy
    T = crossing_times(log_v, grid, np.log(1000.0), 40.0)
    exact = -np.log(1 - np.log(1000.0) / k) / np.exp(log_beta)
    exact = np.minimum(exact, 40.0)
    np.testing.assert_allclose(T, exact, atol=1e-3)
    np.testing.assert_allclose(gompertz_crossing_time(log_beta, k, 0.0, np.log(1000.0), 40.0), exact, rtol=1e-12)
    # a plateau below the threshold never crosses: censored at the horizon
    assert gompertz_crossing_time(np.log(0.1), 6.5, 0.2, np.log(1000.0), 40.0) == 40.0
    # a constant discrepancy d shifts the level: T solves k(1 - e^{-bt}) + d = log thr
    t = gompertz_crossing_time(np.log(0.1), 8.0, 0.5, np.log(1000.0), 40.0)
    assert 8.0 * (1 - np.exp(-0.1 * t)) + 0.5 == pytest.approx(np.log(1000.0))
    # already above the threshold at the first grid point
    assert crossing_times(np.full((1, 3), 8.0), np.array([0.0, 1.0, 2.0]), np.log(1000.0), 5.0)[0] == 0.0
    with pytest.raises(ValueError, match="horizon"):
        crossing_times(log_v, grid, 6.9, 30.0)


def test_imaging_day_is_the_order_statistic_of_the_chance_constraint():
    rng = np.random.default_rng(1)
    T = rng.normal(18.0, 2.0, 1000)
    dec = imaging_day(T, 0.1, 10.0, 40.0, rng=3)
    assert dec.feasible
    assert dec.day == pytest.approx(np.sort(T)[100], abs=1e-9)
    assert dec.day == pytest.approx(dec.closed_form_day, abs=0.05)
    assert np.mean(T < dec.day) <= 0.1
    # any later day violates the constraint on these draws
    assert np.mean(T < np.sort(T)[101] + 1e-9) > 0.1
    # the normal 10% quantile, within Monte Carlo error
    assert dec.day == pytest.approx(18.0 - 1.2816 * 2.0, abs=0.25)
    # every draw crosses before the earliest allowed day: infeasible, image at once
    late = imaging_day(T, 0.1, 30.0, 40.0)
    assert not late.feasible and late.day == 30.0 and late.p_violation == 1.0
    with pytest.raises(ValueError, match="epsilon"):
        imaging_day(T, 1.5, 10.0, 40.0)


def test_linear_gaussian_shapley_known_answers():
    # independent inputs: a_i^2 s_i^2 / Var(Y)
    sh = linear_gaussian_shapley(np.array([1.0, 2.0, 0.5]), np.diag([1.0, 1.0, 4.0]))
    np.testing.assert_allclose(sh, np.array([1.0, 4.0, 1.0]) / 6.0)
    # Y = X1 with corr(X1, X2) = rho: Sh1 = 1 - rho^2/2, Sh2 = rho^2/2 (Owen & Prieur 2017)
    rho = 0.6
    sh = linear_gaussian_shapley(np.array([1.0, 0.0]), np.array([[1.0, rho], [rho, 1.0]]))
    np.testing.assert_allclose(sh, [1 - rho**2 / 2, rho**2 / 2])
    # symmetric correlated pair shares equally; effects always sum to one
    sh = linear_gaussian_shapley(np.array([1.0, 1.0]), np.array([[1.0, 0.3], [0.3, 1.0]]))
    np.testing.assert_allclose(sh, [0.5, 0.5])
    with pytest.raises(ValueError, match="cov must be"):
        linear_gaussian_shapley(np.ones(2), np.eye(3))


def test_gompertz_individual_fits_recover_noiseless_parameters():
    t = np.arange(5.0, 21.0)
    truth = {"a": (0.8, 0.09), "b": (1.1, 0.13)}
    ts, ys, us = [], [], []
    for u, (a, b) in truth.items():
        ts.append(t)
        ys.append(a / b * (1 - np.exp(-b * t)))
        us += [u] * t.size
    fit = gompertz_individual_fits(np.concatenate(ts), np.concatenate(ys), np.array(us))
    assert list(fit["unit"]) == ["a", "b"]
    np.testing.assert_allclose(fit["alpha"], [0.8, 1.1], rtol=1e-5)
    np.testing.assert_allclose(fit["beta"], [0.09, 0.13], rtol=1e-5)


def test_importance_mean_is_bayes_rule_with_its_standard_error():
    # prior N(0, 1) draws, one datum y = 1 with noise sd 1 -> posterior N(1/2, 1/2)
    rng = np.random.default_rng(5)
    means, ses = [], []
    for _ in range(300):
        theta = rng.normal(0.0, 1.0, 400)
        m, se, ess = importance_mean(theta, -0.5 * (1.0 - theta) ** 2)
        means.append(m)
        ses.append(se)
    # Kish ESS / n -> E[w]^2 / E[w^2] = (e^{-1/2} / 2) / (e^{-1/3} / sqrt(3)) = sqrt(3)/2 e^{-1/6}
    assert ess / 400 == pytest.approx(np.sqrt(3) / 2 * np.exp(-1 / 6), abs=0.08)
    assert np.mean(means) == pytest.approx(0.5, abs=0.01)
    # the delta-method standard error matches the spread over replications (within 15%)
    assert np.mean(ses) == pytest.approx(np.std(means), rel=0.15)
    # autocorrelated draws: half the effective draws -> sqrt(2) times the standard error
    _, se1, _ = importance_mean(theta, -0.5 * (1.0 - theta) ** 2)
    _, se2, _ = importance_mean(theta, -0.5 * (1.0 - theta) ** 2, ess_factor=0.5)
    assert se2 == pytest.approx(np.sqrt(2.0) * se1)
    # equal weights: the plain mean
    assert importance_mean(np.arange(5.0), np.zeros(5))[0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="one weight per draw"):
        importance_mean(theta, np.zeros(3))
    with pytest.raises(ValueError, match="zero likelihood"):
        importance_mean(np.ones(3), np.full(3, -np.inf))


# ------------------------------------------------------------------ bad input (fast)
def test_tumor_bad_input_is_refused(tmp_path):
    from case_studies.tumor.run import run

    with pytest.raises(ValueError, match="threshold_mm3 must lie between 50 and 5000"):
        run(tmp_path, tmp_path, threshold_mm3=1.0)
    with pytest.raises(ValueError, match="threshold_mm3 must lie between"):
        run(tmp_path, tmp_path, threshold_mm3=float("nan"))
    with pytest.raises(ValueError, match=r"epsilon .* must be in \(0, 0.5\]"):
        run(tmp_path, tmp_path, epsilon=0.0)
    with pytest.raises(ValueError, match=r"Unknown tumor dataset 'liver'.*\['breast', 'lung'\]"):
        run(tmp_path, tmp_path, dataset="liver")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        run(tmp_path, tmp_path, seed=-3)
    with pytest.raises(ValueError, match="sbc_sims must be >= 2"):
        run(tmp_path, tmp_path, sbc_sims=1)
    with pytest.raises(DataDirectoryError, match="tumor_lung_llc_volumes.tsv"):
        run(tmp_path, tmp_path / "out")


# ------------------------------------------------------------------ the quick run (slow)
@pytest.mark.slow
def test_tumor_summary_has_the_standard_keys(tumor):
    keys = ["case", "seed", "quick", "n_train", "n_holdout", "verification_order", "sbc_passed",
            "sbc_n_sims", "diagnostics_passed", "coverage", "coverage_band", "crps",
            "fraction_extrapolated", "sensitivity_ranking", "decision", "next_measurement",
            "next_measurement_utility", "decision_after", "coverage_after", "operation", "elapsed_s",
            "paths"]
    missing = [k for k in keys if k not in tumor]
    assert not missing, missing
    assert tumor["case"] == "tumor" and tumor["quick"] is True and tumor["seed"] == 1
    assert tumor["n_train"] + tumor["n_holdout"] == 188 and tumor["n_holdout"] == 45
    json.dumps({k: v for k, v in tumor.items()})  # JSON-serialisable for the CLI


@pytest.mark.slow
def test_tumor_verification_rk4_and_sbc(tumor):
    import xarray as xr

    from vvuq_twin.verification import rank_uniformity

    assert 4.7 <= tumor["verification_order"] <= 5.3  # Dormand-Prince 5(4)
    assert tumor["sbc_n_sims"] == 10
    assert "log_lik" in tumor["sbc_quantities"] and "k" in tumor["sbc_quantities"]
    assert tumor["sbc_passed"], tumor["sbc_failed"]
    # re-test the saved ranks independently of the run's verdict
    ds = xr.open_dataset(tumor["paths"]["sbc"], engine="h5netcdf")
    again = rank_uniformity(ds["rank"], int(ds.attrs["max_rank"]), prob=float(ds.attrs["prob"]))
    assert bool(again["band_passed"].all()) == tumor["sbc_passed"]
    assert ds["rank"].min() >= 0 and ds["rank"].max() <= ds.attrs["max_rank"]


@pytest.mark.slow
def test_tumor_holdout_validation(tumor):
    lo, hi = tumor["coverage_band"]
    assert lo <= tumor["coverage"] <= hi, tumor["coverage"]
    # log-scale CRPS below the caliper error scale of about 0.27 (sigma_obs)
    assert 0 < tumor["crps"] < 0.27
    assert 0.0 < tumor["fraction_extrapolated"] < 1.0


@pytest.mark.slow
def test_tumor_structural_correlation_matches_vaghi_2020(tumor, data_dir):
    """Vaghi et al. (2020, abstract): the Gompertz alpha and beta are correlated with R² > 0.92."""
    from scipy import stats

    from case_studies.tumor.data import load_tumor, tumor_twin_data
    from case_studies.tumor.run import VAGHI_R2_MIN

    assert tumor["alpha_beta_r2"] > VAGHI_R2_MIN
    # independent recomputation: profile the Gompertz fit over beta on a grid (alpha is linear)
    ds, _ = load_tumor(data_dir)
    d = tumor_twin_data(ds, "train")
    betas = np.linspace(0.005, 0.6, 6000)
    A, B = [], []
    for m in dict.fromkeys(d.unit.tolist()):
        s = d.unit == m
        t, y = d.x[s, 0], d.y[s]
        g = (1 - np.exp(-np.outer(betas, t))) / betas[:, None]  # log V = alpha * g
        alpha = (g @ y) / np.sum(g * g, axis=1)
        sse = np.sum((y[None, :] - alpha[:, None] * g) ** 2, axis=1)
        i = int(np.argmin(sse))
        A.append(alpha[i])
        B.append(betas[i])
    r2 = stats.pearsonr(B, A)[0] ** 2
    assert r2 == pytest.approx(tumor["alpha_beta_r2"], abs=0.01)
    # k = ln K from alpha = k beta (through the origin) lies inside the twin's 90% interval
    k_lo, k_hi = tumor["k_90"]
    assert k_lo < tumor["k_through_origin"] < k_hi
    # the twin's carrying capacity exceeds the volumes the mice reached (up to ~2250 mm³)... or
    # at least the threshold; and beta is a growth rate of order 0.1/day
    assert tumor["K_median_mm3"] > 1000.0 and 0.03 < tumor["beta_median"] < 0.4
    rows = _table(_json(tumor), "Calibrated parameters next to published values")
    assert rows[0]["published"].startswith("> 0.92")
    assert all(r["published"] == "not found (see text)" for r in rows[1:])


@pytest.mark.slow
def test_tumor_decision_meets_the_chance_constraint(tumor):
    eps = tumor["epsilon"]
    assert tumor["imaging_day"] == pytest.approx(tumor["imaging_day_closed_form"], abs=0.05)
    assert tumor["p_violation"] <= eps
    # at the eps-quantile of the crossing time, P(V > threshold) is about eps, so the
    # (1 - eps)-superquantile of the volume is at least (about) the threshold
    assert tumor["cvar_volume_mm3"] >= 0.95 * tumor["threshold_mm3"]
    rows = _table(_json(tumor), "Chance-constrained next imaging day per mouse")
    assert len(rows) == 20
    feas = [r for r in rows if r["feasible"]]
    assert len(feas) == tumor["n_feasible_mice"] >= 5
    for r in feas:
        assert r["P(T < day)"] <= eps
        assert r["last calibration day"] <= r["next imaging day"] <= 40 + 1e-9
        assert r["T 5%"] <= r["next imaging day"] <= r["T median (d)"] + 1e-9
    focus = [r for r in rows if r["mouse"] == tumor["focus_mouse"]][0]
    assert focus["next imaging day"] == pytest.approx(tumor["imaging_day"])


@pytest.mark.slow
def test_tumor_sensitivity_agrees_with_the_linear_gaussian_shapley(tumor):
    sh, lin = tumor["shapley"], tumor["shapley_linear_gaussian"]
    assert set(sh) == set(lin) and len(sh) == 3
    assert sum(sh.values()) == pytest.approx(1.0, abs=1e-9)
    assert sum(lin.values()) == pytest.approx(1.0, abs=1e-9)
    for k in sh:
        assert abs(sh[k] - lin[k]) < 0.15, (k, sh[k], lin[k])
    assert tumor["sensitivity_ranking"] == sorted(sh, key=lambda k: -sh[k])
    assert tumor["sensitivity_ranking"][0] == max(lin, key=lin.get)
    # the closed form analysed stands for the twin's crossing times (rank correlation)
    assert tumor["closed_form_T_correlation"] > 0.5


@pytest.mark.slow
def test_tumor_goal_oriented_design_and_real_measurement(tumor, data_dir):
    from case_studies.tumor.data import load_tumor

    u, se, med = (tumor["next_measurement_utility"], tumor["next_measurement_utility_se"],
                  tumor["design_utility_median"])
    assert u - med > se > 0
    # the measurement comes from the held-back data: the first held-back day of that mouse
    ds, _ = load_tumor(data_dir)
    sel = (ds["subject"].values == tumor["next_measurement_mouse"]) & ds["holdout"].values
    t, v = ds["time"].values[sel], ds["volume"].values[sel]
    assert tumor["next_measurement_day"] == t.min()
    assert tumor["next_measurement_volume_mm3"] == pytest.approx(v[np.argmin(t)])
    rows = _table(_json(tumor), "Design utilities")
    assert len(rows) == 20
    assert max(r["EIG parameters"] for r in rows) == pytest.approx(tumor["design_parameters_utility"])


@pytest.mark.slow
def test_tumor_assimilation_narrows_the_decision_quantity(tumor):
    assert tumor["T_interval_after"] < tumor["T_interval_before"]
    lo, hi = tumor["coverage_band"]
    assert lo <= tumor["coverage_after"] <= hi
    assert tumor["p_violation_after"] <= tumor["epsilon"] or not np.isfinite(tumor["imaging_day_after"])
    rows = _table(_json(tumor), "Before and after assimilating")
    assert rows[0]["after"] == pytest.approx(tumor["T_interval_after"])


@pytest.mark.slow
def test_tumor_assimilate_agrees_with_exact_reweighting(tumor):
    """vvuq_twin.assimilation.assimilate against Bayes' rule applied to the calibration draws."""
    # the reading passed the gate and was assimilated by SMC (resampled and moved)
    assert tumor["assimilation_quality_gate_passed"] and not tumor["assimilation_drift_alarm"]
    assert tumor["assimilation_status"] == "resample-move", tumor["assimilation_reason"]
    assert tumor["assimilation_phis"] == [1.0]  # one reading: no tempering needed
    assert tumor["assimilation_ess_final"] == pytest.approx(1000.0)  # equal weights after the move
    assert all(0.02 <= a <= 1.0 for a in tumor["assimilation_acceptance"])
    assert tumor["assimilation_n_unique"] > tumor["assimilation_ess"]  # moves spread the duplicates
    # the one-step weights are the exact ones: their Kish ESS agrees with the ESS of the weights
    # computed from predict()'s predictive density (independent code path) to rounding
    assert tumor["assimilation_ess"] == pytest.approx(tumor["assimilation_exact_ess"], rel=1e-8)
    assert tumor["assimilation_ess"] > 0.2 * 1000
    # posterior mean of the decision quantity within Monte Carlo error of exact reweighting
    se = tumor["T_mean_exact_reweighting_se"]
    assert 0 < se < 1.0
    assert abs(tumor["assimilation_check_z"]) < 3.0
    assert abs(tumor["T_mean_after"] - tumor["T_mean_exact_reweighting"]) < 3.0 * np.sqrt(2.0) * se
    rows = _table(_json(tumor), "The assimilation step: UpdateReport")
    assert rows[0]["value"] == "resample-move"


@pytest.mark.slow
def test_tumor_scenario_worlds(tumor):
    # eta(V0) - eta(1 mm³) = log(V0) exp(-beta t) with the same new-mouse draws (common numbers)
    assert tumor["scenario_closed_form_error"] < 1e-6
    med = tumor["scenario_T_median"]
    assert med["2e6 cells"] < med["1e6 cells (as calibrated)"] < med["0.5e6 cells"]
    days = tumor["scenario_first_imaging_day"]
    assert days["2e6 cells"] <= days["1e6 cells (as calibrated)"] <= days["0.5e6 cells"]
    assert "replicate" in tumor["operation"]


@pytest.mark.slow
def test_tumor_report_written(tumor):
    doc = _json(tumor)
    assert doc["seed"] == 1
    s = doc["summary"]
    prov = s["data_provenance"][0]
    assert prov["file"] == "tumor_lung_llc_volumes.tsv" and prov["checksum_verified"] is True
    assert any("SBC" in m["name"] for m in s["verification"])
    assert s["sensitivity"] and "not computed" not in json.dumps(s)
    html = Path(tumor["paths"]["html"]).read_text()
    assert html.count("data:image/png;base64") >= 8
    for name in ("posterior", "sbc", "sensitivity", "design_goal", "design_parameters"):
        assert Path(tumor["paths"][name]).is_file()


@pytest.mark.slow
def test_tumor_same_seed_same_numbers(tumor, data_dir, tmp_path):
    from case_studies.tumor.run import run

    again = run(data_dir, tmp_path, seed=1, quick=True)
    skip = {"elapsed_s", "paths"}
    keys = [k for k, v in tumor.items() if k not in skip and isinstance(v, (int, float, str, list, tuple, dict))]
    assert len(keys) >= 30
    for k in keys:
        assert again[k] == tumor[k], k
    assert _json(again)["sections"] == _json(tumor)["sections"]
