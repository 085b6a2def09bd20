"""Rejuvenation on twins: PyMC's unconstrained space and gradients, new units, a funnel vs NUTS.

* linear hierarchical twin (k_u = mu + 0.5 z_u, y = k_u x + N(0, 0.2^2)) whose posterior is
  Gaussian in closed form: the calibration posterior (exact draws) of three units, then a batch
  naming a fourth, new unit, whose offset is drawn from the population and moved; the result is
  the exact posterior of all data;
* the compiled unconstrained log density equals the natural one plus PyMC's log-Jacobian, and
  its gradient equals finite differences;
* (slow) a hierarchical nonlinear growth twin with unknown between-unit sd (funnel geometry)
  after 4 updates vs a NUTS refit on the same data.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytensor.tensor as pt
import pytest
import xarray as xr

from vvuq_twin import Gaussian, HalfNormal, Hierarchy, LogNormal, Normal, Parameter, PytensorSimulator, Twin, TwinData
from vvuq_twin.assimilation import MixingWarning, assimilate
from vvuq_twin.exceptions import DataValidationError
from vvuq_twin.inference import TwinResult

SIG, TAU = 0.2, 0.5


def _linear_twin():
    return Twin(name="lin_h", simulator=PytensorSimulator(lambda x, p: p["k"] * x[:, 0]),
                parameters=[Parameter("k", Normal(0.0, 1.0), per_unit=True, pop_scale=TAU)],
                observation=Gaussian(sigma=SIG), hierarchy=Hierarchy(dim="unit"))


def _exact(x, y, uidx, n_units):
    X = np.zeros((x.size, 1 + n_units))
    X[:, 0] = x
    X[np.arange(x.size), 1 + uidx] = TAU * x
    P = np.eye(1 + n_units) + X.T @ X / SIG**2
    cov = np.linalg.inv(P)
    return cov @ X.T @ y / SIG**2, cov


@pytest.fixture(scope="module")
def linear_case():
    g = np.random.default_rng(0)
    k_true = {"u1": 0.8, "u2": 1.3, "u3": 0.5, "u4": 2.0}
    x = np.tile(np.linspace(0.2, 1.0, 4), 3)
    units = np.repeat(["u1", "u2", "u3"], 4)
    y = np.array([k_true[u] for u in units]) * x + g.normal(0, SIG, x.size)
    data = TwinData(x=x, y=y, unit=units)
    m, c = _exact(x, y, np.repeat([0, 1, 2], 4), 3)
    n = 2000
    draws = g.multivariate_normal(m, c, n)
    post = xr.Dataset({"k_mu": (("chain", "draw"), draws[None, :, 0]),
                       "k_z": (("chain", "draw", "unit"), draws[None, :, 1:])},
                      coords={"unit": ["u1", "u2", "u3"]})
    twin = _linear_twin()
    res = TwinResult(idata=az.InferenceData(posterior=post), twin=twin, data=data,
                     declaration_hash=twin.hash, data_hash=data.hash)
    x_new = np.linspace(0.2, 1.0, 5)
    new = TwinData(x=x_new, y=k_true["u4"] * x_new + g.normal(0, SIG, 5), unit=["u4"] * 5)
    return res, data, new


def test_new_unit_is_drawn_from_the_population_and_moved_to_the_exact_posterior(linear_case):
    res, data, new = linear_case
    out = assimilate(res, new, rng=1)
    assert out.twin.hierarchy.units == ("u1", "u2", "u3", "u4")
    assert out.particles.values["k_z"].shape == (2000, 4)
    x = np.r_[data.x[:, 0], new.x[:, 0]]
    y = np.r_[data.y, new.y]
    m, c = _exact(x, y, np.r_[np.repeat([0, 1, 2], 4), np.full(5, 3)], 4)
    sd = np.sqrt(np.diag(c))
    got_m = np.r_[out.particles.mean()["k_mu"], out.particles.mean()["k_z"]]
    got_s = np.r_[out.particles.sd()["k_mu"], out.particles.sd()["k_z"]]
    np.testing.assert_array_less(np.abs(got_m - m), 4 * sd / np.sqrt(2000 / 4))
    np.testing.assert_allclose(got_s, sd, rtol=0.12)
    rep = out.reports[-1]
    assert rep.status == "resample-move" and rep.mixing_ok
    # the new unit's offset was informed by its data (far from its N(0, 1) population draw)
    assert sd[-1] < 0.6 and m[-1] > 2.5 * sd[-1] and got_m[-1] > 2.5 * sd[-1]
    # the result carries the new unit through to prediction
    r = out.to_result(rng=0)
    assert list(r.idata.posterior["unit"].values) == ["u1", "u2", "u3", "u4"]
    with pytest.raises(DataValidationError, match=r"unit\(s\) \['u4'\] the twin does not know"):
        assimilate(res, new, new_units=False, rng=1)


def test_unconstrained_density_and_gradient_match_pymc(linear_case):
    """Log density in value space = natural log density + log-Jacobian (checked on a twin with a
    log-transformed noise sd and pop scale); gradient = central finite differences."""
    from vvuq_twin.assimilation.twin_adapter import TwinLogDensity, _data_dict

    twin = Twin(name="lin_h2", simulator=PytensorSimulator(lambda x, p: p["k"] * x[:, 0]),
                parameters=[Parameter("k", Normal(0.0, 1.0), per_unit=True, pop_scale=HalfNormal(1.0))],
                observation=Gaussian(sigma=HalfNormal(0.5)), hierarchy=Hierarchy(dim="unit"))
    _, data, _ = linear_case
    dens = TwinLogDensity(twin, units=("u1", "u2", "u3"), input_names=list(data.input_names))
    d = _data_dict(data)
    dens.prepare(d)
    g = np.random.default_rng(2)
    theta = {"k_mu": g.normal(size=5), "k_sigma": np.abs(g.normal(size=5)) + 0.1,
             "k_z": g.normal(size=(5, 3)), "sigma_obs": np.abs(g.normal(size=5)) + 0.1}
    z = dens.to_unconstrained(theta)
    back = dens.from_unconstrained(z)
    for k in theta:
        np.testing.assert_allclose(back[k], theta[k], rtol=1e-12)
    lp_z, grad = dens.log_prior_z(z, True)
    jac = np.log(theta["k_sigma"]) + np.log(theta["sigma_obs"])  # d exp(u)/du = exp(u)
    np.testing.assert_allclose(lp_z, dens.log_prior(theta) + jac, rtol=1e-10)
    ll_z, gll = dens.log_likelihood_z(z, d, True)
    np.testing.assert_allclose(ll_z, dens.log_likelihood(theta, d), rtol=1e-10)
    h = 1e-6
    fd = np.zeros_like(z)
    for j in range(z.shape[1]):
        e = np.zeros(z.shape[1])
        e[j] = h
        fd[:, j] = (dens.log_likelihood_z(z + e, d, False)[0] + dens.log_prior_z(z + e, False)[0]
                    - dens.log_likelihood_z(z - e, d, False)[0] - dens.log_prior_z(z - e, False)[0]) / (2 * h)
    np.testing.assert_allclose(grad + gll, fd, rtol=1e-5, atol=1e-5)
    # the population block of the non-centred k: (k_mu, log k_sigma, k_z); the group move's map
    # (unit values k_mu + k_sigma k_z held fixed) leaves the compiled likelihood unchanged
    from vvuq_twin.assimilation.kernels import MoveState, PopulationBlock, population_step
    from vvuq_twin.assimilation.targets import TemperedTarget

    blocks = dens.population_blocks()
    assert blocks == (PopulationBlock(0, 1, (2, 3, 4), False, "k"),)
    tgt = TemperedTarget(dens, [d], d)
    st = MoveState(z, tgt(z, False))
    st1, info = population_step(g, st, tgt, 0.0, blocks, 5.0, np.ones((1, 2)))
    assert not np.allclose(st1.z[:, 1], z[:, 1]) or not info.accepted.any()
    prop = z.copy()
    prop[:, 0] += 0.3
    prop[:, 1] -= 0.2
    prop[:, 2:5] = (z[:, :1] + np.exp(z[:, 1:2]) * z[:, 2:5] - prop[:, :1]) / np.exp(prop[:, 1:2])
    np.testing.assert_allclose(dens.log_likelihood_z(prop, d, False)[0], ll_z, rtol=1e-10)


def test_fast_value_function_equals_the_compiled_value_and_gradient_function(linear_case):
    """A value-only call on a data set without a compiled gradient function uses the fast-compile
    function; it equals the C value-and-gradient function's value to 1e-10, and once the latter
    is compiled (prepare_gradient, as a move stage does) value-only calls use it."""
    from vvuq_twin.assimilation.twin_adapter import TwinLogDensity, _data_dict

    _, data, _ = linear_case
    dens = TwinLogDensity(_linear_twin(), units=("u1", "u2", "u3"), input_names=list(data.input_names))
    d = _data_dict(data)
    dens.prepare(d)
    g = np.random.default_rng(4)
    z = g.normal(size=(7, 4))
    fast, none = dens.log_likelihood_z(z, d, False)
    assert none is None and dens.n_compiled_fast == 1 and dens.n_compiled == 0
    dens.prepare_gradient(d)
    assert dens.n_compiled == 1
    full, grad = dens.log_likelihood_z(z, d, True)
    np.testing.assert_allclose(fast, full, rtol=1e-10, atol=1e-10)
    again, _ = dens.log_likelihood_z(z, d, False)
    np.testing.assert_array_equal(again, full)  # the C function now serves value-only calls too
    assert dens.n_compiled_fast == 1 and dens.n_compiled == 1
    # closed form: sum of N(y; (mu + 0.5 z_u) x, 0.2) log densities
    uidx = np.searchsorted(["u1", "u2", "u3"], data.unit)
    k = z[:, :1] + TAU * z[:, 1:][:, uidx]
    exact = (-0.5 * ((data.y[None] - k * data.x[None, :, 0]) / SIG) ** 2
             - np.log(SIG * np.sqrt(2 * np.pi))).sum(1)
    np.testing.assert_allclose(fast, exact, rtol=1e-10)


# --------------------------------------------------------------------------------------------
# slow: funnel vs NUTS
# --------------------------------------------------------------------------------------------
def _growth_twin():
    return Twin(
        name="growth_funnel",
        simulator=PytensorSimulator(lambda x, p: p["A"] * (1.0 - pt.exp(-p["r"] * x[:, 0]))),
        parameters=[Parameter("A", Normal(np.log(10.0), 0.5), per_unit=True, link="log", pop_scale=HalfNormal(0.3)),
                    Parameter("r", LogNormal(np.log(0.3), 0.5))],
        observation=Gaussian(sigma=HalfNormal(1.0)), hierarchy=Hierarchy(dim="unit"),
    )


@pytest.mark.slow
def test_hierarchical_growth_twin_with_unknown_scale_matches_nuts_refit():
    from vvuq_twin import calibrate

    g = np.random.default_rng(5)
    J = 10
    units = [f"u{j}" for j in range(J)]
    A = 10.0 * np.exp(0.15 * g.standard_normal(J))
    t_all = np.arange(1.0, 11.0)

    def batch(ts):
        x = np.tile(ts, J)
        u = np.repeat(units, ts.size)
        a = np.repeat(A, ts.size)
        return TwinData(x=x, y=a * (1 - np.exp(-0.3 * x)) + g.normal(0, 0.5, x.size), unit=u)

    parts = [batch(t_all[i:i + 2]) for i in range(0, 10, 2)]
    twin = _growth_twin()
    res = calibrate(twin, parts[0], draws=500, tune=1000, chains=4, rng=1, warn=False,
                    posterior_predictive=False)
    cur = res
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in range(1, 5):
            cur = assimilate(cur, parts[k], rng=k)
    for w in caught:
        if issubclass(w.category, MixingWarning):
            print("MixingWarning:", w.message)
    print("mixing ok", [r.mixing_ok for r in cur.reports], "stuck", [r.stuck_fraction for r in cur.reports],
          "max rho", [max(r.mixing.values()) if r.mixing else None for r in cur.reports])
    ref = calibrate(twin, cur.data, draws=2000, tune=1000, chains=4, rng=7, warn=False,
                    posterior_predictive=False).idata.posterior
    dm, rs = {}, {}
    for name in ("A_mu", "A_sigma", "r", "sigma_obs", "A_z"):
        nd = ref[name].stack(s=("chain", "draw")).transpose("s", ...).values
        m_ref, s_ref = nd.mean(0), nd.std(0)
        m, s = cur.particles.mean()[name], cur.particles.sd()[name]
        dm[name] = np.max(np.abs(m - m_ref) / s_ref)
        rs[name] = np.max(np.abs(s / s_ref - 1))
    print("max |mean diff| / NUTS sd:", {k: round(float(v), 3) for k, v in dm.items()})
    print("max |sd ratio - 1|:", {k: round(float(v), 3) for k, v in rs.items()})
    print("kernels", [r.kernel for r in cur.reports], "moves", [r.n_moves for r in cur.reports])
    assert all(r.mixing_ok for r in cur.reports)  # the stated criterion was met, no MixingWarning
    assert max(dm.values()) < 0.1 and max(rs.values()) < 0.2
