"""Case-study simulators against closed forms and independent scipy computations; RK4 order."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.integrate import quad, solve_ivp

from case_studies.airframe.model import (
    crack_length,
    crack_length_infinite,
    cycles_to_length,
    cycles_to_length_infinite,
    delta_k,
    paris_cycles_simulator,
)
from case_studies.climate.model import (
    GEOFFROY_CMIP5_MEAN,
    ebm_simulator,
    step_response,
    step_response_expm,
    two_layer_ebm,
)
from case_studies.tumor.model import GROWTH_MODELS, gompertz, growth_simulator, reduced_gompertz
from vvuq_twin.exceptions import TwinSpecificationError
from vvuq_twin.verification import observed_order

# ---------------------------------------------------------------- tumor
TUMOR_PARAMS = {
    "exponential": {"a": 0.25},
    "logistic": {"a": 0.45, "K": 2500.0},
    "gompertz": {"alpha": 0.9, "beta": 0.08, "vc": 1.0},
    "reduced_gompertz": {"beta": 0.09, "k": 8.0, "q": 0.1, "vc": 1.0},
    "von_bertalanffy": {"a": 2.5, "b": 0.12},
    "power_law": {"a": 0.9, "gamma": 0.7},
}
TUMOR_RHS_NP = {
    "exponential": lambda v, p: p["a"] * v,
    "logistic": lambda v, p: p["a"] * v * (1 - v / p["K"]),
    "gompertz": lambda v, p: (p["alpha"] - p["beta"] * np.log(v / p["vc"])) * v,
    "reduced_gompertz": lambda v, p: (p["k"] * p["beta"] + p["q"] - p["beta"] * np.log(v / p["vc"])) * v,
    "von_bertalanffy": lambda v, p: p["a"] * v ** (2 / 3) - p["b"] * v,
    "power_law": lambda v, p: p["a"] * v ** p["gamma"],
}
T_OBS = np.array([0.0, 3.0, 7.5, 12.0, 20.0, 30.0])


@pytest.mark.parametrize("name", sorted(GROWTH_MODELS))
def test_tumor_closed_forms_match_solve_ivp(name):
    p = TUMOR_PARAMS[name]
    v0 = 1.0
    sol = solve_ivp(lambda t, v: TUMOR_RHS_NP[name](v, p), (0, T_OBS[-1]), [v0], t_eval=T_OBS,
                    method="DOP853", rtol=1e-12, atol=1e-12)
    closed = GROWTH_MODELS[name].volume(T_OBS, v0, p).eval()
    np.testing.assert_allclose(closed, sol.y[0], rtol=1e-8)
    assert closed[-1] > 10 * v0  # the test covers real growth, not a flat curve


def test_reduced_gompertz_is_gompertz_on_the_correlation_line():
    beta, k, q = 0.07, 7.5, 0.2
    a = reduced_gompertz(T_OBS, 1.0, beta, k, q).eval()
    b = gompertz(T_OBS, 1.0, k * beta + q, beta).eval()
    np.testing.assert_allclose(a, b, rtol=1e-14)
    # carrying capacity of the q = 0 form is Vc exp(k)
    far = reduced_gompertz(np.array([2000.0]), 1.0, beta, k).eval()
    assert far[0] == pytest.approx(np.exp(k), rel=1e-6)


def _sim_eval(sim, t, params):
    x = pt.as_tensor_variable(np.asarray(t, dtype=float)[:, None])
    return sim(x, {k: pt.as_tensor_variable(np.float64(v)) for k, v in params.items()}).eval()


def test_tumor_ode_observed_order_is_five_and_euler_fails():
    # ODESimulator integrates with Dormand-Prince 5(4): observed order -> 5 from below (3.7 at
    # 20-80 steps, 4.6 at 40-160, 4.86 at 80-320), so the asymptotic range is used
    p = TUMOR_PARAMS["gompertz"]
    exact = _sim_eval(growth_simulator("gompertz"), T_OBS, p)
    steps = [80, 160, 320]
    errs = [np.max(np.abs(_sim_eval(growth_simulator("gompertz", method="rk4", n_steps=n), T_OBS, p) - exact) / exact)
            for n in steps]
    h = [T_OBS[-1] / n for n in steps]
    res = observed_order(h, errs, theoretical_order=5, tol=0.3)
    assert res.passed, str(res)
    assert errs[-1] < 1e-8
    # failure case: forward Euler on the same problem has order 1, and the check says so
    def euler(n):
        v, hh = np.ones_like(T_OBS), T_OBS / n
        for _ in range(n):
            v = v + hh * TUMOR_RHS_NP["gompertz"](v, p)
        return np.max(np.abs(v - exact) / exact)
    e_euler = [euler(n) for n in steps]
    bad = observed_order(h, e_euler, theoretical_order=5, tol=0.3)
    assert not bad.passed and abs(bad.order - 1.0) < 0.3


def test_tumor_simulator_gradients_and_per_unit_parameters():
    alpha = pt.dvector("alpha")
    beta = pt.dscalar("beta")
    x = pt.as_tensor_variable(T_OBS[1:, None])
    sim = growth_simulator("gompertz", log_output=True)
    out = sim(x, {"alpha": alpha, "beta": beta})
    g = pytensor.function([alpha, beta], pytensor.grad(out.sum(), alpha))
    a_val = np.full(T_OBS.size - 1, 0.9)
    # d log V / d alpha = (1 - exp(-beta t)) / beta  (closed form)
    np.testing.assert_allclose(g(a_val, 0.08), (1 - np.exp(-0.08 * T_OBS[1:])) / 0.08, rtol=1e-10)
    rk = growth_simulator("gompertz", method="rk4", n_steps=120)
    per_unit = rk(pt.as_tensor_variable(T_OBS[:, None]), {"alpha": pt.as_tensor_variable(np.linspace(0.7, 1.0, 6)),
                                                         "beta": pt.as_tensor_variable(0.08)}).eval()
    closed = gompertz(T_OBS, 1.0, np.linspace(0.7, 1.0, 6), 0.08).eval()
    np.testing.assert_allclose(per_unit, closed, rtol=2e-5)
    with pytest.raises(TwinSpecificationError, match=r"Unknown growth model 'gompretz'.*'gompertz'"):
        growth_simulator("gompretz")
    with pytest.raises(TwinSpecificationError, match=r"needs parameter\(s\) \['K'\]"):
        GROWTH_MODELS["logistic"].volume(T_OBS, 1.0, {"a": 0.3})


# ---------------------------------------------------------------- airframe
PARIS = {"log10_C": -10.2, "m": 3.1, "stress_range": 48.3}
A_OBS = np.array([9.0, 12.0, 20.0, 30.0, 40.0, 49.8])


def test_paris_cycles_simpson_order_four_against_closed_form():
    exact = cycles_to_length_infinite(A_OBS, 9.0, PARIS["log10_C"], PARIS["m"], PARIS["stress_range"]).eval()
    steps = [8, 16, 32, 64]
    errs = [np.max(np.abs(cycles_to_length(A_OBS, 9.0, PARIS["log10_C"], PARIS["m"], PARIS["stress_range"], None,
                                           n_steps=n).eval() - exact)) for n in steps]
    res = observed_order([1 / n for n in steps], errs, theoretical_order=4, tol=0.3)
    assert res.passed, str(res)
    assert errs[-1] / exact[-1] < 1e-6


def test_paris_cycles_finite_width_against_scipy_quad():
    W = 152.4
    num = cycles_to_length(A_OBS, 9.0, PARIS["log10_C"], PARIS["m"], PARIS["stress_range"], W, n_steps=256).eval()
    C = 10 ** PARIS["log10_C"]

    def dn_da(a_mm):
        dk = PARIS["stress_range"] * np.sqrt(np.pi * a_mm * 1e-3) * np.sqrt(1 / np.cos(np.pi * a_mm / W))
        return 1e-3 / (C * dk ** PARIS["m"])

    ref = np.array([quad(dn_da, 9.0, a, epsabs=0, epsrel=1e-12)[0] for a in A_OBS])
    np.testing.assert_allclose(num, ref, rtol=1e-8, atol=1e-6)
    # the finite-width correction shortens the life, and more so for long cracks
    inf = cycles_to_length_infinite(A_OBS, 9.0, PARIS["log10_C"], PARIS["m"], PARIS["stress_range"]).eval()
    assert np.all(num[1:] < inf[1:])
    assert 0.5 < num[-1] / inf[-1] < 0.95
    # Feddersen factor at a/W -> 0 tends to 1
    assert delta_k(0.001, 1.0, W).eval() / delta_k(0.001, 1.0).eval() == pytest.approx(1.0, abs=1e-9)


def test_paris_crack_length_rk4_order_and_inverse():
    cyc = cycles_to_length_infinite(A_OBS, 9.0, PARIS["log10_C"], PARIS["m"], PARIS["stress_range"]).eval()
    steps = [4, 8, 16, 32]
    errs = [np.max(np.abs(crack_length(cyc, 9.0, PARIS["log10_C"], PARIS["m"], PARIS["stress_range"], None,
                                       n_steps=n).eval() - A_OBS)) for n in steps]
    res = observed_order([1 / n for n in steps], errs, theoretical_order=4, tol=0.3)
    assert res.passed, str(res)
    np.testing.assert_allclose(
        crack_length_infinite(cyc, 9.0, PARIS["log10_C"], PARIS["m"], PARIS["stress_range"]).eval(), A_OBS, rtol=1e-10)
    # finite width: a(N) by RK4 agrees with solve_ivp, and inverts N(a)
    W = 152.4
    n_fw = cycles_to_length(A_OBS, 9.0, PARIS["log10_C"], PARIS["m"], PARIS["stress_range"], W, n_steps=64).eval()
    a_fw = crack_length(n_fw, 9.0, PARIS["log10_C"], PARIS["m"], PARIS["stress_range"], W, n_steps=200).eval()
    np.testing.assert_allclose(a_fw, A_OBS, rtol=1e-6)
    C = 10 ** PARIS["log10_C"]
    rate = lambda N, a: [1e3 * C * (PARIS["stress_range"] * np.sqrt(np.pi * a[0] * 1e-3 / np.cos(np.pi * a[0] / W))) ** PARIS["m"]]  # noqa: E731
    sol = solve_ivp(rate, (0, n_fw[-1]), [9.0], t_eval=n_fw, rtol=1e-11, atol=1e-11, method="DOP853")
    np.testing.assert_allclose(a_fw, sol.y[0], rtol=1e-6)


def test_paris_gradient_flows_and_matches_scaling():
    lc, m = pt.dscalar("log10_C"), pt.dscalar("m")
    sim = paris_cycles_simulator(n_steps=32)
    out = sim(pt.as_tensor_variable(A_OBS[:, None]), {"log10_C": lc, "m": m})
    f = pytensor.function([lc, m], [out, pytensor.grad(out.sum(), lc), pytensor.grad(out.sum(), m)])
    n, g_c, g_m = f(-10.2, 3.1)
    # N is proportional to 1/C: dN/dlog10C = -ln(10) N exactly
    assert g_c == pytest.approx(-np.log(10) * n.sum(), rel=1e-10)
    eps = 1e-6
    fd = (f(-10.2, 3.1 + eps)[0].sum() - f(-10.2, 3.1 - eps)[0].sum()) / (2 * eps)
    assert g_m == pytest.approx(fd, rel=1e-6)
    assert n[0] == 0.0 and np.all(np.diff(n) > 0)
    with pytest.raises(TwinSpecificationError, match="m = 2 needs the logarithmic form"):
        cycles_to_length_infinite(A_OBS, 9.0, -10.0, 2.0, 48.3)
    with pytest.raises(TwinSpecificationError, match="n_steps must be >= 1"):
        cycles_to_length(A_OBS, 9.0, -10.0, 3.0, 48.3, n_steps=0)


# ---------------------------------------------------------------- climate
G = GEOFFROY_CMIP5_MEAN


def test_two_layer_closed_form_matches_matrix_exponential():
    t = np.linspace(0, 500, 101)
    sr = step_response(t, G["F_4x"], G["lam"], G["gamma"], G["C"], G["C_d"])
    T, Td = step_response_expm(t, G["F_4x"], G["lam"], G["gamma"], G["C"], G["C_d"])
    np.testing.assert_allclose(sr.T, T, atol=1e-12)
    np.testing.assert_allclose(sr.T_d, Td, atol=1e-12)
    assert sr.a_f + sr.a_s == pytest.approx(1.0, abs=1e-12)
    assert sr.tau_f < 10 < 100 < sr.tau_s  # a fast (years) and a slow (centuries) mode
    # equilibrium: both layers reach F / lambda
    far = step_response([1e5], G["F_4x"], G["lam"], G["gamma"], G["C"], G["C_d"])
    assert far.T[0] == pytest.approx(G["F_4x"] / G["lam"], rel=1e-9)


def test_two_layer_rk4_order_four_on_step_forcing():
    years = 150
    t = np.arange(1, years + 1)
    sr = step_response(t, G["F_4x"], G["lam"], G["gamma"], G["C"], G["C_d"])
    subs = [1, 2, 4, 8]
    errs = []
    for n in subs:
        r = two_layer_ebm(np.full(years, G["F_4x"]), G["lam"], G["gamma"], G["C"], G["C_d"], n_substeps=n)
        errs.append(max(np.max(np.abs(r["T"].eval() - sr.T)), np.max(np.abs(r["T_d"].eval() - sr.T_d))))
    res = observed_order([1 / n for n in subs], errs, theoretical_order=4, tol=0.3)
    assert res.passed, str(res)
    assert errs[-1] < 1e-7


def test_two_layer_with_efficacy_and_varying_forcing_against_solve_ivp():
    rng = np.random.default_rng(0)
    forcing = np.cumsum(rng.normal(0.02, 0.1, 60))
    lam, gamma, C, Cd, eps = 1.2, 0.7, 8.0, 100.0, 1.3
    r = two_layer_ebm(forcing, lam, gamma, C, Cd, efficacy=eps, n_substeps=8)
    T, Td, N = (r[k].eval() for k in ("T", "T_d", "N"))
    y = np.zeros(2)
    ref = []
    for f in forcing:  # piecewise-constant forcing, integrated year by year
        rhs = lambda _t, s, f=f: [(f - lam * s[0] - eps * gamma * (s[0] - s[1])) / C, gamma * (s[0] - s[1]) / Cd]  # noqa: E731
        y = solve_ivp(rhs, (0, 1), y, rtol=1e-12, atol=1e-12, method="DOP853").y[:, -1]
        ref.append(y)
    ref = np.array(ref)
    np.testing.assert_allclose(T, ref[:, 0], atol=1e-8)
    np.testing.assert_allclose(Td, ref[:, 1], atol=1e-8)
    np.testing.assert_allclose(N, forcing - lam * T - (eps - 1) * gamma * (T - Td), atol=1e-12)
    # the efficacy matters: epsilon = 1 gives a measurably different answer
    T1 = two_layer_ebm(forcing, lam, gamma, C, Cd, efficacy=1.0, n_substeps=8)["T"].eval()
    assert np.max(np.abs(T1 - T)) > 1e-3


def test_ebm_simulator_reference_period_indexing_and_gradient():
    years = np.arange(1800, 1951)
    forcing = np.linspace(0.0, 1.5, years.size)
    sim = ebm_simulator(years, forcing, reference=(1850, 1900))
    lam = pt.dscalar("lam")
    params = {"lam": lam, "gamma": pt.as_tensor_variable(0.7), "C": pt.as_tensor_variable(8.0),
              "C_d": pt.as_tensor_variable(100.0)}
    x_ref = np.arange(1850, 1901, dtype=float)[:, None]
    out_ref = sim(pt.as_tensor_variable(x_ref), params)
    assert abs(pytensor.function([lam], out_ref.mean())(1.1)) < 1e-12
    x = np.array([[1900.0], [1950.0]])
    out = sim(pt.as_tensor_variable(x), params)
    f = pytensor.function([lam], [out, pytensor.grad(out[-1], lam)])
    val, g = f(1.1)
    full = two_layer_ebm(forcing, 1.1, 0.7, 8.0, 100.0)["T"].eval()
    anomaly = full - full[50:101].mean()
    np.testing.assert_allclose(val, anomaly[[100, 150]], atol=1e-12)
    assert g < 0  # stronger feedback -> less warming
    with pytest.raises(TwinSpecificationError, match="reference period"):
        ebm_simulator(years, forcing, reference=(1700, 1750))
    with pytest.raises(TwinSpecificationError, match="contiguous"):
        ebm_simulator(years[::2], forcing[::2])
    with pytest.raises(TwinSpecificationError, match="C must be positive"):
        step_response([1.0], 1.0, 1.0, 1.0, -1.0, 10.0)


def test_ebm_with_rcmip_forcing_reproduces_observed_warming():
    """Real-data sanity check: CMIP5-mean two-layer parameters driven by RCMIP historical ERF
    give the observed HadCRUT5 warming to within a few tenths of a degree; without the
    anthropogenic forcing (misspecified: natural forcing only) the check fails."""
    pytest.importorskip("fair")
    from pathlib import Path
    import os

    from case_studies.climate.data import load_forcing, load_hadcrut5

    env = os.environ.get("VVUQ_TWIN_DATA")
    ddir = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (ddir / "hadcrut5_global_annual.csv").is_file():
        pytest.skip("HadCRUT5 data not found: set VVUQ_TWIN_DATA or provide ../shared/data")
    obs, _ = load_hadcrut5(ddir)
    erf, _ = load_forcing(("ssp245",), start=1750, end=2022,
                          variables=("Effective Radiative Forcing", "Effective Radiative Forcing|Natural"))
    years = erf["year"].values
    p = {k: pt.as_tensor_variable(np.float64(G[k])) for k in ("lam", "gamma", "C", "C_d")}
    x = pt.as_tensor_variable(obs["year"].values.astype(float)[:, None])
    sims = {}
    for label, var in (("total", "erf"), ("natural", "erf_1")):
        sim = ebm_simulator(years, erf[var].sel(scenario="ssp245").values, reference=(1850, 1900))
        sims[label] = sim(x, p).eval()
    y = obs["gmst"].values
    recent = obs["year"].values >= 2013
    warm_obs, warm_sim = y[recent].mean(), sims["total"][recent].mean()
    assert 0.9 < warm_obs < 1.3
    assert abs(warm_sim - warm_obs) < 0.35
    assert np.corrcoef(sims["total"], y)[0, 1] > 0.85
    assert abs(sims["natural"][recent].mean() - warm_obs) > 0.7  # natural forcing alone fails
