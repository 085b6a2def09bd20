"""The declaration answers numeric questions in numpy, checked against PyMC's own model.

``Twin.log_prior`` / ``Twin.log_likelihood`` on random draws must equal
``model.compile_logp(vars=free_RVs / observed_RVs, jacobian=False)`` of ``Twin.build_model``
to 1e-8 (relative: pytensor keeps Python-float prior constants that are exact in float32,
such as ``Normal(1, 2)``, as float32 constants, so PyMC's own log-density carries ~1e-9
relative rounding; the numpy answer is float64 throughout), for every kind of parameter, discrepancy and observation model; ``Prior.logpdf``
equals ``pm.logp`` of the distribution the prior registers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pymc as pm
import pytensor
import pytest

import vvuq_twin as vt
from vvuq_twin.twin import priors as P

FAST = "FAST_COMPILE"  # python-mode compilation: cheap, and exact in float64


def _sim_line():
    return vt.PytensorSimulator(lambda X, p: p["a"] + p["b"] * X[:, 0], name="line")


def _data(n=9, seed=0, units=None, missing=False, y_sd=None, positive=False, d=1):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.2, 3.0, n) if d == 1 else rng.uniform(0.2, 3.0, (n, d))
    y = 1.0 + 0.5 * (x if d == 1 else x[:, 0]) + rng.normal(0, 0.3, n)
    if positive:
        y = np.exp(0.2 * y)
    if missing:
        y[[2, 5]] = np.nan
    kw = dict(unit=units) if units is not None else {}
    return vt.TwinData(x=x, y=y, y_sd=y_sd, missing="mask" if missing else "raise", **kw)


def _cases():
    units = ["u1", "u2", "u3"] * 3
    H = vt.Hierarchy(dim="unit")
    pos_sim = vt.PytensorSimulator(lambda X, p: p["a"] * pm.math.exp(0.1 * p["b"] * X[:, 0]), name="pos")
    par = [vt.Parameter("a", vt.Normal(1, 2)), vt.Parameter("b", vt.Normal(0, 1))]
    return {
        "global, Gaussian noise prior": (
            vt.Twin("t1", _sim_line(), par, observation=vt.Gaussian(sigma=vt.HalfNormal(1.0))), _data()),
        "per-unit log link + bias per unit + StudentT nu prior": (
            vt.Twin("t2", _sim_line(), [vt.Parameter("a", vt.Normal(0, 1), per_unit=True, link="log"),
                                        vt.Parameter("b", vt.StudentTPrior(4, 0, 1))],
                    discrepancy=vt.BiasDiscrepancy(vt.Normal(0, 0.5), per_unit=True),
                    observation=vt.StudentT(sigma=vt.Gamma(2, 4), nu=vt.Exponential(0.2)), hierarchy=H),
            _data(units=units)),
        "centred per-unit, fixed pop scale + LogNormalObs with relative noise + missing": (
            vt.Twin("t3", pos_sim, [vt.Parameter("a", vt.Normal(0, 0.5), per_unit=True, centered=True,
                                                 link="log", pop_scale=0.3),
                                    vt.Parameter("b", vt.Uniform(-1, 1))],
                    observation=vt.LogNormalObs(sigma=vt.LogNormal(-1, 0.5), relative=vt.HalfCauchy(0.2)),
                    hierarchy=H),
            _data(units=units, missing=True, positive=True)),
        "per-unit centered='auto' (chosen for the data) + Gaussian noise prior": (
            vt.Twin("t3a", pos_sim, [vt.Parameter("a", vt.Normal(0, 0.5), per_unit=True, centered="auto",
                                                  link="log", pop_scale=vt.HalfNormal(0.5)),
                                     vt.Parameter("b", vt.Normal(0, 1))],
                    observation=vt.Gaussian(sigma=vt.HalfNormal(0.3)), hierarchy=H),
            _data(units=units)),
        "marginalised exact GP (default ls prior) + y_sd": (
            vt.Twin("t4", _sim_line(), par, discrepancy=vt.GPDiscrepancy(eta=vt.HalfNormal(0.5)),
                    observation=vt.Gaussian(sigma=vt.InverseGamma(3, 1))),
            _data(y_sd=np.full(9, 0.1))),
        "latent GP Matern52 (marginalize=False) + missing": (
            vt.Twin("t5", _sim_line(), par,
                    discrepancy=vt.GPDiscrepancy(ls=vt.Gamma(3, 2), eta=vt.HalfNormal(0.5), kernel="Matern52",
                                                 marginalize=False),
                    observation=vt.Gaussian(sigma=vt.HalfNormal(1.0))), _data(missing=True)),
        "constrained GP (value and slope), marginalised": (
            vt.Twin("t6", _sim_line(), par,
                    discrepancy=vt.GPDiscrepancy(ls=vt.LogNormal(0, 1), eta=vt.HalfNormal(1.0),
                                                 constraint="value_and_slope", x0=0.2),
                    observation=vt.Gaussian(sigma=vt.HalfNormal(0.3))), _data()),
        "per-unit GP Exponential kernel, marginalised": (
            vt.Twin("t7", _sim_line(), par,
                    discrepancy=vt.GPDiscrepancy(ls=vt.LogNormal(0, 1), eta=0.4, kernel="Exponential",
                                                 per_unit=True),
                    observation=vt.Gaussian(sigma=vt.HalfNormal(0.3)), hierarchy=H), _data(units=units)),
        "HSGP ExpQuad, default geometry": (
            vt.Twin("t8", _sim_line(), par, discrepancy=vt.HSGPDiscrepancy(m=7, eta=vt.HalfNormal(0.5)),
                    observation=vt.Gaussian(sigma=vt.HalfNormal(1.0))), _data()),
        "HSGP ExpQuad per unit on 2 inputs, fixed geometry": (
            vt.Twin("t10", _sim_line(), par,
                    discrepancy=vt.HSGPDiscrepancy(m=[3, 4], ls=vt.LogNormal(0, 0.5), per_unit=True,
                                                   center=[1.45, 1.55], L=[3.1, 3.7]),
                    observation=vt.Gaussian(sigma=vt.HalfNormal(1.0)), hierarchy=H), _data(units=units, d=2)),
        "HSGP Matern32 per unit on 2 inputs, fixed geometry": (
            vt.Twin("t9", _sim_line(), par,
                    discrepancy=vt.HSGPDiscrepancy(m=[3, 4], kernel="Matern32", ls=vt.LogNormal(0, 0.5),
                                                   per_unit=True, center=[1.45, 1.55], L=[3.1, 3.7]),
                    observation=vt.Gaussian(sigma=0.4), hierarchy=H), _data(units=units, d=2)),
    }


CASES = _cases()
# PyMC's Matern spectral densities hold Gamma((D+3)/2) as a float32 constant (relative error
# 3.7e-8, pytensor's cast policy), so its own log-likelihood is that far from exact there.
RTOL = {"HSGP Matern32 per unit on 2 inputs, fixed geometry": 1e-6}


def _random_draws(model, n, seed):
    """Draws of every free variable (prior draws, spread further so the check is not local)."""
    vals = pm.draw(model.free_RVs, draws=n, random_seed=seed, mode=FAST)
    return {rv.name: np.asarray(v, float) for rv, v in zip(model.free_RVs, vals)}


def _pymc_logps(model, draws):
    """PyMC's log prior (free RVs) and log-likelihood (observed RVs), no Jacobian, per draw."""
    f_prior = model.compile_logp(vars=model.free_RVs, jacobian=False, mode=FAST)
    f_lik = model.compile_logp(vars=model.observed_RVs, jacobian=False, mode=FAST)
    out_p, out_l = [], []
    n = len(next(iter(draws.values())))
    for i in range(n):
        point = _point(model, draws, i)
        out_p.append(f_prior(point))
        out_l.append(f_lik(point))
    return np.array(out_p), np.array(out_l)


def _point(model, draws, i):
    """Draw ``i`` as a point of the model's (transformed) value variables."""
    point = {}
    for rv in model.free_RVs:
        vv = model.rvs_to_values[rv]
        val = draws[rv.name][i]
        tr = model.rvs_to_transforms.get(rv)
        point[vv.name] = (np.asarray(tr.forward(pytensor.tensor.as_tensor(val), *rv.owner.inputs).eval())
                          if tr is not None else val)
    return point


@pytest.mark.parametrize("case", list(CASES))
def test_log_prior_and_likelihood_match_pymc(case):
    twin, data = CASES[case]
    model = twin.build_model(data)
    assert sorted(twin.free_variable_names(data)) == sorted(rv.name for rv in model.free_RVs)
    draws = _random_draws(model, 5, seed=list(CASES).index(case) + 1)
    ref_prior, ref_lik = _pymc_logps(model, draws)
    assert np.all(np.isfinite(ref_prior)) and np.all(np.isfinite(ref_lik))
    np.testing.assert_allclose(twin.log_prior(draws, data), ref_prior, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(twin.log_likelihood(draws, data), ref_lik, rtol=RTOL.get(case, 1e-8), atol=1e-8)
    # names come from the declaration: hyperparameters are free variables, not parameters
    hyper = twin.hyperparameter_names()
    assert set(hyper) <= {rv.name for rv in model.free_RVs}
    assert not set(hyper) & set(twin.parameter_names)
    assert twin.role_names() == ("eta", "delta", "zeta", "y")


def test_hyperparameter_and_noise_names():
    twin, _ = CASES["per-unit log link + bias per unit + StudentT nu prior"]
    assert twin.hyperparameter_names() == ["a_mu", "a_sigma", "delta_bias", "sigma_obs", "nu_obs"]
    assert twin.observation.noise_names() == ("sigma_obs", "nu_obs")
    twin, _ = CASES["HSGP Matern32 per unit on 2 inputs, fixed geometry"]
    assert twin.hyperparameter_names() == ["delta_ls", "delta_eta"]
    assert twin.observation.noise_names() == ()  # fixed noise is not a free variable
    twin, _ = CASES["per-unit GP Exponential kernel, marginalised"]
    assert twin.hyperparameter_names() == ["delta_ls", "sigma_obs"]  # eta fixed at 0.4


def test_log_prior_is_minus_inf_outside_the_support_and_sensitive_to_values():
    twin, data = CASES["global, Gaussian noise prior"]
    d = {"a": np.array([0.0, 0.0]), "b": np.array([0.0, 1.0]), "sigma_obs": np.array([-1.0, 1.0])}
    lp = twin.log_prior(d)
    assert lp[0] == -np.inf and np.isfinite(lp[1])
    # a wrong value changes the answer (the check can fail)
    d2 = dict(d, a=np.array([0.0, 0.1]))
    assert twin.log_prior(d2)[1] != lp[1]
    with pytest.raises(KeyError, match="no 'sigma_obs'"):
        twin.log_prior({"a": d["a"], "b": d["b"]})


def test_default_length_scale_prior_needs_the_inputs():
    twin, data = CASES["marginalised exact GP (default ls prior) + y_sd"]
    with pytest.raises(vt.DataValidationError, match="pass data="):
        twin.log_prior({"a": np.zeros(1)})


@pytest.mark.parametrize("prior", [P.Normal(1, 2), P.StudentT(3, 1, 2), P.HalfNormal(2), P.HalfCauchy(1.5),
                                   P.LogNormal(0.3, 0.7), P.Uniform(-1, 2), P.Gamma(2, 3),
                                   P.InverseGamma(3, 2), P.Exponential(2), P.Beta(2, 3)])
def test_prior_logpdf_matches_pymc(prior):
    rng = np.random.default_rng(0)
    x = np.asarray(prior.sample(rng, (7,)), float)
    # the same PyMC distribution with float64 parameters (Python floats may become float32
    # constants; some of PyMC's own constants are float32 too: HalfCauchy is 1.6e-8 off)
    kw = {k: np.float64(v) for k, v in dataclasses.asdict(prior).items()}
    ref = pm.logp(getattr(pm, type(prior).__name__).dist(**kw), pytensor.shared(x)).eval()
    np.testing.assert_allclose(prior.logpdf(x), ref, rtol=5e-8, atol=1e-10)
    outside = {"positive": -0.5, "unit": 1.5, "interval": 2.5}.get(prior.support)
    if outside is not None:
        assert prior.logpdf(outside) == -np.inf


@pytest.mark.parametrize("obs", [vt.Gaussian(sigma=0.5), vt.StudentT(sigma=0.5, nu=3.0), vt.LogNormalObs(sigma=0.5)])
def test_observation_logpdf_and_sample_agree_with_pymc(obs):
    rng = np.random.default_rng(3)
    zeta = np.array([[1.0, 2.0, 3.0]])
    noise = obs.noise_values({}, n=1)
    sd = obs.scale_numpy(noise, zeta)
    y = obs.sample(np.repeat(zeta, 20000, axis=0), np.repeat(sd, 20000, axis=0), {k: np.repeat(v, 20000) for k, v in noise.items()}, rng)
    with pm.Model():
        obs.register_noise()
        rv = obs.likelihood("y", zeta[0], sd[0])
    ref = pm.logp(rv, pytensor.shared(y[:5])).eval()
    np.testing.assert_allclose(obs.logpdf(y[:5], zeta, sd, {k: v[:1] for k, v in noise.items()}), ref, atol=1e-10)
    # the samples have the distribution's median (zeta for all three)
    np.testing.assert_allclose(np.median(y, axis=0), zeta[0], rtol=0.03)


def test_role_names_are_defined_once():
    from vvuq_twin.inference import ROLE_DETERMINISTICS
    from vvuq_twin.twin.declaration import ROLE_VARS

    twin, _ = CASES["global, Gaussian noise prior"]
    assert ROLE_DETERMINISTICS == ROLE_VARS[:3] == ("eta", "delta", "zeta")
    assert twin.role_names() is ROLE_VARS


# ------------------------------------------------------------------ the typed build handle
def test_build_record_and_discrepancy_handle():
    from vvuq_twin.twin.declaration import TwinBuild
    from vvuq_twin.twin.discrepancy import DiscrepancyHandle

    twin, data = CASES["marginalised exact GP (default ls prior) + y_sd"]
    b = twin.build(data)
    assert isinstance(b, TwinBuild) and isinstance(b.discrepancy, DiscrepancyHandle)
    assert b.twin is twin and b.marginal and b.discrepancy.delta is None
    assert not hasattr(b.model, "_vvuq_twin")  # nothing patched onto the PyMC model
    assert set(b.noise) == {"sigma"}
    # the handle's prior covariance is the one the numpy answer uses (same draws)
    draws = _random_draws(b.model, 3, seed=5)
    vvs = [b.model.rvs_to_values[b.model[n]] for n in ("delta_ls", "delta_eta")]
    K_of_values = b.model.replace_rvs_by_values([b.discrepancy.marginal_cov])[0]
    f = pytensor.function(vvs, K_of_values, mode=FAST)
    for i in range(3):
        pt_i = _point(b.model, draws, i)
        Knp = twin.discrepancy.marginal_cov_numpy({k: v[i:i + 1] for k, v in draws.items()}, data.x, None)[0]
        np.testing.assert_allclose(f(*[pt_i[v.name] for v in vvs]), Knp, rtol=1e-9, atol=1e-12)
    # a non-marginal discrepancy gives delta and has no conditional
    twin2, data2 = CASES["HSGP ExpQuad, default geometry"]
    b2 = twin2.build(data2)
    assert not b2.marginal and b2.discrepancy.delta is not None and b2.discrepancy.marginal_cov is None
    with pytest.raises(vt.TwinSpecificationError, match="needs an integrated-out discrepancy"):
        b2.discrepancy.conditional(name="d")
    with pytest.raises(vt.TwinSpecificationError, match="is not integrated out"):
        b2.discrepancy.condition_on(None, None, np.arange(3))
    # each discrepancy keeps its own typed build state in its handle (no shared dict)
    from vvuq_twin.twin.discrepancy import BuildContext, Conditioning, GPState, HSGPState

    assert not hasattr(BuildContext, "handles") and "handles" not in BuildContext.__dataclass_fields__
    st = b.discrepancy.state
    assert isinstance(st, GPState) and st.gp is None and st.Z.shape[0] == data.x.shape[0]
    assert isinstance(b.discrepancy.conditioning, Conditioning)   # recorded by Twin.build
    assert isinstance(b2.discrepancy.state, HSGPState) and b2.discrepancy.conditioning is None
    # a discrepancy registered under another name is evaluated at new inputs from its own state
    with pm.Model():
        ctx = BuildContext(X=data2.x, unit_idx=None, n_units=1)
        h = twin2.discrepancy.add(ctx, "other")
        d_new = h.at(data2.x[:3], None, False, "other_new")
        assert d_new.eval().shape == (3,) and h.state.beta.name == "other_hsgp_coeffs"


def test_supports_marginal_is_asked_of_every_discrepancy():
    g = vt.Gaussian(sigma=0.1)
    assert vt.GPDiscrepancy().supports_marginal(g)
    assert not vt.GPDiscrepancy().supports_marginal(vt.StudentT(sigma=0.1))
    assert not vt.GPDiscrepancy(marginalize=False).supports_marginal(g)
    for d in (vt.NoDiscrepancy(), vt.BiasDiscrepancy(), vt.HSGPDiscrepancy()):
        assert not d.supports_marginal(g)


# ---------------------------------------------------------------- a twin whose simulator is a surrogate
def _surrogate_twin(kind):
    """A surrogate of f(x, a, b) = sin(1.5 a) + b cos(x) stands in for the simulator; its
    predictive variance (PCE: LOO-MSE, constant; GP: input- and parameter-dependent) enters the
    observation variance, in PyMC's model and in the numpy answer alike. (The function is not
    near-linear on purpose: a GP fitted to a near-linear function has a huge output scale and a
    predictive mean/variance that are differences of large numbers, whose rounding differs by
    ~1e-8 between two compilations of the same graph.)"""
    from vvuq_twin.spaces import ParameterSpace, UncertainInput
    from vvuq_twin.surrogates import GPSurrogate, PCESurrogate
    from vvuq_twin.surrogates.training import draw_design
    from vvuq_twin.twin.simulators import SurrogateSimulator

    space = ParameterSpace([UncertainInput("x", (0.0, 3.0)), UncertainInput("a", (-1.0, 3.0)),
                            UncertainInput("b", (-0.5, 1.5))])
    X = draw_design(space, 60, method="sobol", rng=3)
    y = np.sin(1.5 * X[:, 1]) + X[:, 2] * np.cos(X[:, 0])
    if kind == "pce":
        sur = PCESurrogate(space, max_order=4).fit(X, y)
        par = [vt.Parameter("a", vt.NormalPrior(1, 0.5)), vt.Parameter("b", vt.NormalPrior(0.5, 0.3))]
        obs, H, units = vt.GaussianObs(sigma=vt.HalfNormal(0.5)), None, None
    else:
        sur = GPSurrogate(sparse=False, n_iter=60, rng=0).fit(X, y)
        par = [vt.Parameter("a", vt.NormalPrior(0, 0.3), per_unit=True, link="identity"),
               vt.Parameter("b", vt.NormalPrior(0.5, 0.3))]
        obs, H, units = vt.StudentTObs(sigma=vt.HalfNormal(0.5), nu=vt.Exponential(0.2)), vt.Hierarchy(dim="unit"), \
            ["u1", "u2", "u3"] * 3
    sim = SurrogateSimulator(sur, parameter_names=["a", "b"], x_columns=[0])
    twin = vt.Twin(f"sur_{kind}", sim, par, observation=obs, hierarchy=H)
    return twin, _data(units=units, y_sd=np.full(9, 0.05)), sur


@pytest.mark.parametrize("kind", ["pce", "gp"])
def test_surrogate_twin_log_likelihood_matches_pymc(kind):
    twin, data, sur = _surrogate_twin(kind)
    model = twin.build_model(data)
    draws = _random_draws(model, 5, seed=40 + len(kind))
    ref_prior, ref_lik = _pymc_logps(model, draws)
    assert np.all(np.isfinite(ref_lik))
    np.testing.assert_allclose(twin.log_prior(draws, data), ref_prior, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(twin.log_likelihood(draws, data), ref_lik, rtol=1e-8, atol=1e-8)
    # the surrogate's predictive variance is part of the likelihood: without it the answer differs
    eta, extra = twin.simulate(draws, data)
    assert extra is not None and np.all(extra > 0)
    if kind == "gp":
        assert np.ptp(extra) > 0  # input/parameter-dependent emulator variance
    noise = twin.observation.noise_values(draws, eta.shape[0])
    sd_no_emulator = twin.observation.scale_numpy(noise, eta, data.y_sd, None)
    no_emu = twin.observation.logpdf(np.asarray(data.y)[None, :], eta, sd_no_emulator, noise).sum(axis=1)
    assert np.max(np.abs(no_emu - ref_lik)) > 1e-6
