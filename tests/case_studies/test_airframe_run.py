"""The airframe case study: its pieces (fast) and one quick loop run on the real data (slow).

Fast tests check the pieces of :mod:`case_studies.airframe` against independent computations:
the quadrature of a new panel's failure probability against Monte Carlo, the mixture quantile
against its definition, the embedded discrepancy's orthogonality to the Paris terms (closed-form
Legendre integrals), monotonicity of ``N(a)`` for any coefficients (and the checker failing on
an additive-discrepancy curve that decreases), the specimen design (all 68 used, disjoint,
quick a prefix of full), the secant fit on synthetic Paris data, and bad input.

The slow tests run ``run(quick=True, seed=1)`` once per module and read the loop's typed step
results (``summary["steps"]``) and the flat figures: sampler gate, monotonicity over all draws,
population coverage on held-out specimens against its binomial band, the decision inside the
calibrated domain with an agreeing Monte Carlo check, assimilation by resample-move with its
move diagnostics, and the Paris exponent against the independent secant fit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from case_studies._data import DataDirectoryError


@pytest.fixture(scope="module")
def airframe(data_dir, tmp_path_factory):
    import os

    from case_studies.airframe.run import run

    # VVUQ_TWIN_CASE_OUT (as in the validation suite) keeps the loop's saved steps: a rerun resumes
    out = os.environ.get("VVUQ_TWIN_CASE_OUT")
    return run(data_dir, os.path.join(out, "airframe") if out else tmp_path_factory.mktemp("airframe"),
               seed=1, quick=True)


def _plain(obj):
    """Values with their PROVISIONAL wrappers ({"value", "status"}) taken off: which steps are
    provisional is checked on ``provisional_steps`` (test_airframe_sampler_gate_passes)."""
    if isinstance(obj, dict):
        if set(obj) == {"value", "status"} and obj["status"] == "PROVISIONAL":
            return _plain(obj["value"])
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _step(summary, name):
    [s] = [s for s in summary["steps"] if s["step"] == name]
    return _plain(s)


# ------------------------------------------------------------------ fast: decision mathematics
@pytest.fixture(scope="module")
def life():
    from case_studies.airframe.decision import LifeModel
    from case_studies.airframe.twin import QUADRATURE, log10_dk_range

    return LifeModel(QUADRATURE[True][0], log10_dk_range(), rule=QUADRATURE[True][1])


# log10_C_mu, m_mu, log10_C_sigma, m_sigma, rate_p2, rate_p3, rate_p4, noise sd (1e5 cycles)
THETA = np.array([[-6.94, 3.2, 0.045, 0.20, 0.04, 0.14, 0.03, 0.02],
                  [-6.90, 3.0, 0.080, 0.10, -0.05, 0.10, 0.00, 0.03]])


def test_conditional_failure_probability_matches_monte_carlo(life):
    from case_studies.airframe.decision import CYCLES_SCALE, conditional_failure_probability

    T = 185_000.0  # P between 1e-3 and 0.3 for both draws: resolved by 1e6 Monte Carlo samples
    pf = conditional_failure_probability(T, THETA, life, 49.8)
    g = np.random.default_rng(7)
    n = 1_000_000
    for th, p_quad in zip(THETA, pf):
        lc = th[0] + th[2] * g.standard_normal(n)
        m = th[1] + th[3] * g.standard_normal(n)
        eps = th[7] * g.standard_normal(n)
        p_mc = np.mean(life(49.8, lc, m, th[4:7]) + CYCLES_SCALE * eps <= T)
        se = math.sqrt(p_mc * (1 - p_mc) / n)
        assert p_mc > 100 / n  # the check resolves this probability
        assert abs(p_quad - p_mc) < 4 * se, (p_quad, p_mc, se)
    pf_fine = conditional_failure_probability(T, THETA, life, 49.8, n_m=64, n_eps=24)
    np.testing.assert_allclose(pf, pf_fine, rtol=1e-3)


def test_monte_carlo_failure_probability_agrees_with_quadrature(life):
    from case_studies.airframe.decision import conditional_failure_probability, monte_carlo_failure_probability

    T = 190_000.0
    p_quad = float(np.mean(conditional_failure_probability(T, THETA, life, 49.8)))
    p_mc, se = monte_carlo_failure_probability(T, THETA, life, 49.8, n=400_000, rng=3)
    assert p_mc > 1e-3 and abs(p_mc - p_quad) < 4 * se


def test_life_scales_with_stress_range_as_paris_law_without_discrepancy(life):
    # dK is proportional to the stress range, so N ~ dsigma^-m exactly when b = 0
    n1 = life(30.0, -7.0, 3.3, None, 48.3)
    n2 = life(30.0, -7.0, 3.3, None, 48.3 * 1.2)
    assert n1 / n2 == pytest.approx(1.2**3.3, rel=1e-12)
    # and N is exactly proportional to 10^-log10_C with the discrepancy on
    b = np.array([0.1, -0.2, 0.05])
    assert life(30.0, -7.0, 3.3, b) / life(30.0, -6.5, 3.3, b) == pytest.approx(10**0.5, rel=1e-12)


def test_mixture_quantile_inverts_the_failure_probability(life):
    from case_studies.airframe.decision import conditional_failure_probability, mixture_quantile

    t = mixture_quantile(1e-4, THETA, life, 49.8)
    pf = np.mean(conditional_failure_probability(t, THETA, life, 49.8))
    assert pf == pytest.approx(1e-4, rel=1e-3)
    with pytest.raises(ValueError, match="lies outside"):
        mixture_quantile(1e-4, THETA, life, 49.8, bracket=(1e3, 2e3))
    with pytest.raises(ValueError, match="8 columns"):
        conditional_failure_probability(1e5, THETA[:, :6], life, 49.8)


def test_reliability_index_is_accurate_far_in_the_tail():
    from scipy import stats

    from case_studies.airframe.decision import reliability_index

    p = np.array([0.3, 1e-4, 1e-12, 1e-100])
    np.testing.assert_allclose(reliability_index(np.log(p)), -stats.norm.ppf(p), rtol=1e-10)


# ------------------------------------------------------------------ fast: embedded discrepancy
def test_discrepancy_is_orthogonal_to_the_paris_terms():
    from numpy.polynomial.legendre import leggauss

    from case_studies.airframe.model import legendre_shape

    x, w = leggauss(20)
    lo, hi = 0.9, 1.4  # log10 dK range; the basis maps it onto [-1, 1]
    ldk = lo + (x + 1) * (hi - lo) / 2
    for k, b in enumerate(np.eye(3)):
        s = legendre_shape(ldk, list(b), (lo, hi))
        # orthogonal to the constant (log10 C) and to the linear term (m log10 dK)
        assert abs(np.sum(w * s)) < 1e-12 and abs(np.sum(w * s * x)) < 1e-12
        # the norm of P_n on [-1, 1] is 2 / (2n + 1)
        assert np.sum(w * s * s) == pytest.approx(2 / (2 * (k + 2) + 1), rel=1e-12)
    with pytest.raises(Exception, match="3 coefficients"):
        legendre_shape(ldk, [0.1, 0.2], (lo, hi))


def test_twin_quadrature_matches_adaptive_quadrature_of_the_paris_integrand():
    """N(a) of the twin's rule (4-point Gauss-Legendre in log a, both modes) against scipy's
    adaptive quadrature of the finite-width integrand with the embedded discrepancy, at the
    posterior and in its tails; the old rule (Simpson on 8 panels, 17 nodes) is 100x less
    accurate at 49.8 mm with twice the nodes; an unknown rule is refused."""
    from scipy.integrate import quad

    from case_studies.airframe.decision import DELTA_K_REF, LifeModel
    from case_studies.airframe.model import legendre_shape, quadrature_rule
    from case_studies.airframe.twin import A0, QUADRATURE, log10_dk_range

    W, ds, rng_dk = 152.4, 48.3, log10_dk_range()

    def dn_da(a, m, b):  # cycles per mm, log10_C = -7
        dk = ds * np.sqrt(np.pi * a * 1e-3) * np.sqrt(1.0 / np.cos(np.pi * a / W))
        s = legendre_shape(np.log10(dk), list(b), rng_dk)
        return 1e-3 / (1e-7 * (dk / DELTA_K_REF) ** m * 10.0 ** s)

    a = np.array([12.0, 20.0, 35.0, 49.8])
    for m, b, tol in ((3.07, (0.02, 0.12, 0.02), 1e-5), (3.0, (0.1, 0.2, 0.1), 2e-4)):
        exact = np.array([quad(dn_da, A0, x, args=(m, b), epsabs=0, epsrel=1e-13, limit=200)[0] for x in a])
        for quick in (True, False):
            n, rule = QUADRATURE[quick]
            got = LifeModel(n, rng_dk, rule=rule)(a, -7.0, m, np.array(b))
            assert np.max(np.abs(got / exact - 1)) < tol, (m, quick)
            assert quadrature_rule(n, rule)[0].size == 4 * n
        simpson8 = LifeModel(8, rng_dk)(a, -7.0, m, np.array(b))
        assert abs(simpson8[-1] / exact[-1] - 1) > 4e-4
    with pytest.raises(Exception, match="Unknown quadrature rule"):
        LifeModel(2, rng_dk, rule="trapezoid")


def test_cycles_increase_with_crack_length_for_any_discrepancy():
    from case_studies.airframe.decision import LifeModel, monotonicity_violations
    from case_studies.airframe.twin import log10_dk_range

    a = np.linspace(9.2, 49.8, 204)
    B = np.random.default_rng(0).normal(0.0, 0.4, size=(2000, 3))  # twice the prior sd
    # the exact N(a) increases for any coefficients (a positive integrand); the 8-panel Simpson
    # rule of the quick twin resolves that for coefficients up to about one prior sd, 32 panels
    # for twice the prior sd (the posterior is far tighter: the run checks every draw)
    assert monotonicity_violations(LifeModel(32, log10_dk_range())(a[None, :], -7.0, 3.1, B[:, None, :])) == 0
    small = np.random.default_rng(1).normal(0.0, 0.1, size=(2000, 3))
    assert monotonicity_violations(LifeModel(8, log10_dk_range())(a[None, :], -7.0, 3.1, small[:, None, :])) == 0
    # the checker fails on what the old additive discrepancy on cycles did past the data
    life = LifeModel(8, log10_dk_range())
    additive = life(a, -7.0, 3.1) + 1e5 * np.where(a > 33.6, -0.08 * (a - 33.6), 0.0)
    assert monotonicity_violations(additive[None, :]) == 1
    assert monotonicity_violations(np.array([[1.0, 2.0, 2.0]])) == 1  # flat is not increasing


def test_vectorised_curves_match_the_compiled_life_model():
    """LifeModel.curves (numpy, node quantities computed once: the monotonicity check over all
    draws) gives the compiled quadrature's N(a) to rounding, and the same violation count where
    the 8-panel rule does make N(a) decrease (coefficients far beyond the posterior's)."""
    from case_studies.airframe.decision import LifeModel, monotonicity_violations
    from case_studies.airframe.twin import log10_dk_range

    life = LifeModel(8, log10_dk_range())
    g = np.random.default_rng(3)
    a = np.linspace(9.2, 49.8, 60)
    lc = -6.95 + 0.05 * g.standard_normal((40, 3))
    m = 3.1 + 0.2 * g.standard_normal((40, 3))
    for sd in (0.1, 1.5):
        b = sd * g.standard_normal((40, 3))
        ref = life(a[None, None, :], lc[:, :, None], m[:, :, None], b[:, None, None, :])
        new = life.curves(a, lc, m, b, chunk=7)  # chunks that do not divide the draws
        np.testing.assert_allclose(new, ref, rtol=1e-12)
        v = monotonicity_violations(new.reshape(-1, a.size))
        assert v == monotonicity_violations(ref.reshape(-1, a.size))
        assert (v == 0) if sd == 0.1 else (v > 0)
    with pytest.raises(ValueError, match="shape"):
        life.curves(a, lc, m[:, :2], b)


def test_failure_probability_reused_over_intervals_is_the_same_number(life):
    from case_studies.airframe.decision import FailureProbability, conditional_failure_probability, mixture_quantile

    fp = FailureProbability(THETA, life, 49.8)
    for T in (1.2e5, 1.9e5):
        np.testing.assert_array_equal(fp(T), conditional_failure_probability(T, THETA, life, 49.8))
    assert mixture_quantile(1e-4, fp) == mixture_quantile(1e-4, THETA, life, 49.8)


def test_twin_declares_the_embedded_discrepancy_and_no_additive_one():
    from case_studies.airframe.run import build_twin
    from case_studies.airframe.twin import SHAPE_NAMES

    twin = build_twin(quick=True)
    assert set(SHAPE_NAMES) <= set(twin.parameter_names)
    assert not twin.discrepancy.hyperparameter_names()  # no additive discrepancy on the cycles
    assert build_twin(quick=True).hash != build_twin(quick=True, a_max_mm=45.0).hash


# ------------------------------------------------------------------ fast: the design
def test_specimen_design_uses_all_specimens(data_dir):
    from case_studies.airframe.data import load_virkler
    from case_studies.airframe.twin import A_MAX, holdout_matrix, specimen_design, twin_data

    ds, _ = load_virkler(data_dir)
    specs = ds["specimen"].values
    for quick in (True, False):
        d = specimen_design(specs, quick)
        parts = [set(d.calibration), set(d.stream), set(d.holdout)]
        assert sum(len(p) for p in parts) == 68 and set().union(*parts) == set(specs)
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    q, f = specimen_design(specs, True), specimen_design(specs, False)
    assert f.calibration[:len(q.calibration)] == q.calibration  # same design, fewer specimens
    assert specimen_design(specs, True) == q  # does not depend on any run seed
    cal = twin_data(ds, q.calibration, 12)
    for s in q.calibration:  # 49.8 mm (the decision's length) is calibrated for every specimen
        assert np.isclose(cal.x[np.asarray(cal.unit) == s, 0].max(), A_MAX)
    h = holdout_matrix(ds, q.holdout[:2], (15.0, A_MAX))
    sel = (specs == q.holdout[1]) & np.isclose(ds["crack_half_length"].values, A_MAX)
    assert h[1, 1] == pytest.approx(float(ds["cycles"].values[sel][0]) / 1e5)
    with pytest.raises(ValueError, match="no measurement at 40.0 mm"):
        holdout_matrix(ds, q.holdout[:1], (40.0,))


def test_secant_fit_recovers_a_known_paris_exponent():
    from case_studies.airframe.model import cycles_to_length
    from case_studies.airframe.report import secant_paris_fit

    a = np.linspace(9.0, 49.8, 120)
    n = cycles_to_length(a, 9.0, -7.0, 3.25, 48.3, 152.4, n_steps=64, delta_k_ref=12.0).eval()
    m, _ = secant_paris_fit(a, n, np.full(a.size, "1"))
    assert m == pytest.approx(3.25, abs=0.01)


def test_m_comparison_reports_the_secant_fit_and_the_related_published_value():
    from case_studies.airframe.data import load_virkler
    from case_studies.airframe.report import PUBLISHED_RELATED, m_comparison, secant_paris_fit

    ds, _ = load_virkler()
    out = m_comparison(ds, 3.0, 0.1, (2.8, 3.2))
    m_sec, _ = secant_paris_fit(ds["crack_half_length"].values, ds["cycles"].values, ds["specimen"].values)
    assert out["m_secant_all_specimens"] == pytest.approx(m_sec)
    assert out["difference_in_posterior_sd"] == pytest.approx((3.0 - m_sec) / 0.1)
    assert out["secant_inside_twin_90"] is bool(2.8 <= m_sec <= 3.2)
    assert out["published_value_checked"] is False  # no value under Virkler's loading was read
    assert out["published_related"] == PUBLISHED_RELATED and PUBLISHED_RELATED["comparable_to_virkler"] is False
    assert out["difference_to_published_related"] == pytest.approx(3.0 - 3.7053)


def test_airframe_bad_input_is_refused(tmp_path):
    from case_studies.airframe.run import run

    with pytest.raises(TypeError, match="seed must be an int"):
        run(tmp_path, tmp_path, seed=1.5)
    with pytest.raises(DataDirectoryError, match="virkler_crack_growth.csv"):
        run(tmp_path, tmp_path / "out")


# ------------------------------------------------------------------ slow: the quick run
def test_full_mode_sbc_runs_the_calibrations_inference_on_the_calibration_design(data_dir):
    """Issue #14 item 4: full mode's SBC simulates on the calibration design itself (the loop's
    calibration data: its specimens, lengths and rows) and calibrates each replication with the
    Calibrate step's own sampler, settings and budget; it gates on the replications'
    convergence; quick mode reports it NOT APPLICABLE with what was measured."""
    from case_studies.airframe import run as R
    from case_studies.airframe.data import load_virkler
    from case_studies.airframe.decision import LifeModel
    from case_studies.airframe.steps import NotRun
    from case_studies.airframe.twin import A_MAX, log10_dk_range, specimen_design
    from vvuq_twin.loop import SBC, Calibrate, Status

    ds, _ = load_virkler(data_dir)
    design = specimen_design(ds["specimen"].values, False)
    life = LifeModel(R.QUADRATURE[False][0], log10_dk_range(A_MAX), rule=R.QUADRATURE[False][1])
    steps = {s.name: s for s in R._steps(False, life, design, ds, [], R.build_twin(quick=False))}
    sbc, cal = steps["sbc"], steps["calibrate"]
    # the plain loop SBC: its template is ctx.split.calibration (no sub-design of its own)
    assert type(sbc) is SBC and isinstance(cal, Calibrate) and sbc.n_sims == R.SBC_N_SIMS == 20
    b = R.budget(False)
    assert (sbc.draws, sbc.tune, sbc.chains) == (b["draws"], b["tune"], b["chains"]) == (3000, 1000, 2)
    for key in ("mass_matrix", "target_accept", "thresholds"):
        assert sbc.calibrate_kwargs[key] == b[key]
    assert sbc.max_unconverged == R.SBC_MAX_UNCONVERGED == 0.1
    # the ranked quantities: population (4), discrepancy shape (3), noise (1) + log_lik: 1 - 0.05/9
    assert len(sbc.var_names) == 8 and sbc.prob == pytest.approx(1 - 0.05 / 9)
    quick = R._sbc(R.build_twin(quick=True), True)
    assert isinstance(quick, NotRun) and quick.config()["reason"] == R.SBC_QUICK_REASON
    assert R.SBC_QUICK_REASON.startswith("not run in quick mode") and "376 s" in R.SBC_QUICK_REASON
    res, obj = quick.run(None)
    assert res.status is Status.NOT_APPLICABLE and obj is None


def test_cli_has_no_sbc_option(capsys):
    """SBC is part of every full airframe run (as in the other cases): the former opt-in flag is
    an unknown argument, a usage error (exit 2) before anything runs."""
    from vvuq_twin.cli import _main

    with pytest.raises(SystemExit) as e:
        _main(["run", "airframe", "--sbc"])
    assert e.value.code == 2 and "unrecognized arguments: --sbc" in capsys.readouterr().err


def test_assimilation_budget_of_each_mode(data_dir):
    """The assimilate step runs N_PARTICLES[quick] particles on N_STREAM[quick] new specimens in
    each mode, the stream specimens are disjoint from calibration and hold-out, and full mode
    holds out at least as many specimens as quick mode's calibration has."""
    from case_studies.airframe import run as R
    from case_studies.airframe.data import load_virkler
    from case_studies.airframe.decision import LifeModel
    from case_studies.airframe.steps import AirframeAssimilate
    from case_studies.airframe.twin import A_MAX, N_STREAM, log10_dk_range, specimen_design

    ds, _ = load_virkler(data_dir)
    for quick in (True, False):
        design = specimen_design(ds["specimen"].values, quick)
        assert len(design.stream) == N_STREAM[quick] == 2
        steps = R._steps(quick, LifeModel(R.QUADRATURE[quick][0], log10_dk_range(A_MAX), rule=R.QUADRATURE[quick][1]),
                         design, ds, [], R.build_twin(quick=quick))
        [a] = [s for s in steps if isinstance(s, AirframeAssimilate)]
        assert a.kw == {"n_particles": R.N_PARTICLES[quick]}
        assert [s.name for s in steps].count("sbc") == 1
    assert 0 < R.N_PARTICLES[True] <= R.N_PARTICLES[False]
    assert len(specimen_design(ds["specimen"].values, False).holdout) == 68 - 32 - 2


@pytest.mark.slow
def test_stated_sbc_power_is_reproduced():
    """The power the report states for 20 replications (SBC_POWER) against an independent
    simulation: ranks Binomial(99, Phi(z / k)) or Binomial(99, Phi(z - b)), the loop's band."""
    from scipy.stats import norm

    from case_studies.airframe.report import SBC_POWER
    from vvuq_twin.verification.sbc import rank_uniformity

    g, reps, n = np.random.default_rng(11), 300, 20
    def power(f):
        r = np.stack([g.binomial(99, f(g.standard_normal(n))) for _ in range(reps)], axis=1)
        return 1.0 - float(rank_uniformity(r, 99, prob=1 - 0.05 / 9)["band_passed"].values.mean())
    assert "0.60" in SBC_POWER[20] and "0.85" in SBC_POWER[20] and "0.005" in SBC_POWER[20]
    assert abs(power(lambda z: norm.cdf(z / 0.5)) - 0.60) < 0.09  # 3 binomial sd at 300 runs
    assert abs(power(lambda z: norm.cdf(z - 1.0)) - 0.85) < 0.07
    assert power(norm.cdf) < 0.03


@pytest.mark.slow
def test_airframe_sampler_gate_passes(airframe):
    cal = _step(airframe, "calibrate")
    assert cal["status"] == "PASS", cal["reason"]
    ch = cal["values"]["checks"]
    assert ch["rhat"]["value"] <= 1.01 and ch["divergences"]["value"] == 0
    assert ch["ess_bulk"]["value"] >= 400 and ch["ess_tail"]["value"] >= 400
    # nothing is PROVISIONAL because of the calibration; what consumes the assimilated posterior
    # is PROVISIONAL exactly while the assimilation's moves miss their mixing criterion (see
    # test_airframe_assimilation_meets_its_mixing_criterion)
    mixed = bool(_step(airframe, "assimilate")["values"]["mixing_ok"])
    after = {"monotonicity_after", "revalidate", "decide_after"}
    assert set(airframe["provisional_steps"]) == (set() if mixed else after), airframe["provisional_steps"]


@pytest.mark.slow
def test_airframe_sbc_is_reported_not_run_in_quick_mode(airframe):
    # SBC on the real calibration design does not fit the quick budget: the step says so
    # (NOT APPLICABLE with the measured cost), full mode runs it; never a silent omission
    s = _step(airframe, "sbc")
    assert s["status"] == "NOT APPLICABLE" and "not run in quick mode" in s["reason"]
    assert airframe["sbc_status"] == "NOT APPLICABLE" and airframe["sbc_passed"] is None


@pytest.mark.slow
def test_airframe_steps_repeat_exactly_from_the_same_posterior(airframe, data_dir):
    """Same seed, same numbers (issue 14): the case's own steps (monotonicity, population
    validation, decision with its 2e6-sample Monte Carlo check) re-run in a fresh context on
    the run's saved calibration reproduce the run's JSON values exactly."""
    from pathlib import Path

    from case_studies.airframe import run as R
    from case_studies.airframe.data import load_virkler
    from case_studies.airframe.decision import LifeModel
    from case_studies.airframe.twin import THIN, log10_dk_range, specimen_design, twin_data
    from vvuq_twin.inference import load_result
    from vvuq_twin.loop import DataSplit, LoopContext
    from vvuq_twin.loop.status import jsonable

    ds, _ = load_virkler(data_dir)
    design = specimen_design(ds["specimen"].values, True)
    cal = twin_data(ds, design.calibration, THIN[True])
    stream = [twin_data(ds, [sp], THIN[True]) for sp in design.stream]
    twin = R.build_twin(quick=True)
    out = Path(airframe["volatile"]["paths"]["html"]).parent
    [nc] = sorted(out.glob("loop/steps/*_calibrate/calibration.nc"))
    ctx = LoopContext(twin, DataSplit(cal, None, stream), seed=1)
    ctx.objects["calibrate"] = load_result(nc, twin=twin, data=cal)
    life = LifeModel(R.QUADRATURE[True][0], log10_dk_range(), rule=R.QUADRATURE[True][1])
    steps = {st.name: st for st in R._steps(True, life, design, ds, stream, twin)}
    for name in ("monotonicity", "validate", "decide"):
        again, _ = steps[name].run(ctx)
        assert jsonable(again.values) == _step(airframe, name)["values"], name


@pytest.mark.slow
def test_airframe_quadrature_verified_at_order_eight(airframe):
    v = _step(airframe, "verify")
    assert v["status"] == "PASS" and abs(v["values"]["observed_order"] - 8.0) <= 0.3
    assert v["values"]["formal_order"] == 8.0 == airframe["verification_formal_order"]


@pytest.mark.slow
def test_airframe_twin_is_monotone_in_every_draw(airframe):
    for name in ("monotonicity", "monotonicity_after"):
        m = _step(airframe, name)["values"]
        assert m["violations"] == 0 and m["n_draws"] >= 2000 and m["n_lengths"] >= 150
    assert airframe["monotonicity_violations"] == 0 == airframe["monotonicity_violations_after"]


@pytest.mark.slow
def test_airframe_population_coverage_on_held_out_specimens(airframe):
    from scipy import stats

    v = _step(airframe, "validate")["values"]
    n = airframe["n_specimens_held_out"]
    assert n == 50 and airframe["n_specimens_used"] == 18
    k = v["inside_at_critical"]
    lo, hi = stats.binom.ppf([0.025, 0.975], n, 0.9)
    assert v["band_count"] == [int(lo), int(hi)]
    assert lo <= k <= hi, (k, lo, hi)
    # the band is informative: a twin covering 70% would fall below it
    assert v["coverage"]["informative"] and v["band"][0] > 0.7
    assert airframe["coverage"] == pytest.approx(k / n)


@pytest.mark.slow
def test_airframe_decision_in_domain_and_checked(airframe):
    d = _step(airframe, "decide")["values"]
    assert d["inside_calibrated_domain"] and d["a_crit_mm"] <= d["calibrated_max_length_mm"]
    assert d["pf_upper"] <= 1e-4 and d["interval"] % 1000 == 0
    assert abs(d["pf_mc_z"]) < 4  # the independent Monte Carlo estimate agrees
    # a higher load shortens the interval, a lower one lengthens it
    w = d["world_intervals"]
    assert w["stress range +10%"] < d["interval"] < w["stress range -10%"]
    assert d["interval"] < d["life_q05"]


@pytest.mark.slow
def test_airframe_assimilation_moves_and_is_coherent(airframe):
    a = _step(airframe, "assimilate")["values"]
    assert a["statuses"] == ["resample-move"] * 2, a["statuses"]
    n = a["n_particles"]
    from case_studies.airframe.run import N_PARTICLES

    assert n == N_PARTICLES[True]  # quick mode's particles (the step's configuration reached the engine)
    for b in a["batches"]:
        assert b["kernel"] and b["n_moves"] and b["mixing"]
        assert len(b["acceptance"]) == len(b["kernel"]) == len(b["n_moves"])  # kept per stage by the loop
        assert b["ess_final"] >= 0.5 * n  # >= 0.5 N particles after the moves
        assert all(0.1 <= x <= 0.9 for x in b["acceptance"]), b["acceptance"]  # the moves do move
    sd = a["population_sd"]
    # two more specimens inform the population location: its sd does not grow
    assert sd["log10_C_mu"]["after"] <= 1.15 * sd["log10_C_mu"]["before"]
    r = _step(airframe, "revalidate")["values"]
    lo, hi = r["band_count"]
    assert lo <= r["inside_at_critical"] <= hi


@pytest.mark.slow
def test_airframe_paris_exponent_against_independent_fit(airframe):
    mp = airframe["m_published"]
    assert abs(mp["difference"]) < 0.4, mp
    assert mp["published_value_checked"] is False and mp["published_value"] is None  # said, not hidden
    rel = mp["published_related"]  # the nearest published fit, labelled as not comparable
    assert rel["m"] == 3.7053 and rel["comparable_to_virkler"] is False and "fas-2022-0004" in rel["source"]
    assert mp["difference_to_published_related"] == pytest.approx(airframe["m_median"] - 3.7053)
    lo, hi = airframe["m_90"]
    assert lo < airframe["m_median"] < hi


@pytest.mark.slow
def test_airframe_assimilation_meets_its_mixing_criterion(airframe):
    a = _step(airframe, "assimilate")["values"]
    assert all(0.2 <= x <= 0.9 for b in a["batches"] for x in b["acceptance"])
    assert a["mixing_ok"], [b["reason"] for b in a["batches"]]
