"""Public-API frictions found when trying the package as a new user (issue #13), each fixed."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import xarray as xr


def test_sensitivity_records_the_seed_given():
    from vvuq_twin.sensitivity import sensitivity
    from vvuq_twin.testing.problems_sa import ishigami, ishigami_space

    ds = sensitivity(ishigami, inputs=ishigami_space(), method="sobol", n=64, rng=1, n_boot=20)
    assert ds.attrs["seed"] == 1 and isinstance(ds.attrs["seed_derived"], int)
    again = sensitivity(ishigami, inputs=ishigami_space(), method="sobol", n=64, rng=1, n_boot=20)
    xr.testing.assert_identical(ds["estimate"], again["estimate"])  # the seed still reproduces
    gen = sensitivity(ishigami, inputs=ishigami_space(), method="sobol", n=64, rng=np.random.default_rng(1), n_boot=20)
    assert gen.attrs["seed"] == gen.attrs["seed_derived"]  # a Generator: the drawn integer


def test_value_of_information_actions_are_plain_python():
    from vvuq_twin.decisions import evpi

    rng = np.random.default_rng(0)
    L = xr.DataArray(rng.normal(size=(200, 2)) + [0.0, 0.3], dims=("draw", "action"),
                     coords={"action": ["repair", "fly"]})
    r = evpi(L)
    assert r.prior_action == "repair" and type(r.prior_action) is str


def test_laplace_is_labelled_exact_on_a_linear_gaussian_problem():
    from vvuq_twin.design import eig_laplace
    from vvuq_twin.testing.problems_design import linear_gaussian_problem, location_finding_problem

    from vvuq_twin.design import eig_closed_form

    r = eig_laplace(linear_gaussian_problem(), [[1.0, 0.5]], n_outer=50, rng=0)
    assert r.bound == "exact"
    # "exact" means unbiased: on the linear-Gaussian problem it meets the closed form in its error
    big = eig_laplace(linear_gaussian_problem(), [[1.0, 0.5]], n_outer=2000, rng=1)
    cf = eig_closed_form(linear_gaussian_problem(), [[1.0, 0.5]]).estimate
    assert abs(big.estimate - cf) < 4 * big.se and big.se < 0.02
    lf = eig_laplace(location_finding_problem(), [[0.5, 0.5]], n_outer=50, rng=0)
    assert lf.bound == "approximate"


def test_no_sampling_line_without_posterior_predictive(caplog):
    """calibrate(posterior_predictive=False) draws delta of a marginalised GP internally and
    says nothing about it; with posterior_predictive=True PyMC's line names y as before."""
    import arviz as az
    import pymc as pm

    import vvuq_twin as vt
    from vvuq_twin.inference.calibrate import _arrange_groups

    x = np.linspace(0.0, 1.0, 6)
    data = vt.TwinData(x=x, y=0.5 * x + 0.1 * np.sin(6 * x))
    twin = vt.Twin("gp", vt.PytensorSimulator(lambda X, p: p["a"] * X[:, 0], name="ax"),
                   [vt.Parameter("a", vt.Normal(0, 1))],
                   discrepancy=vt.GPDiscrepancy(ls=0.3, eta=vt.HalfNormal(0.5)),
                   observation=vt.Gaussian(sigma=0.05))
    assert twin.marginal_discrepancy()
    model = twin.build_model(data, conditional_roles=True)
    with model:
        prior = pm.sample_prior_predictive(draws=10, random_seed=1, var_names=["a", "delta_eta", "eta"])
    idata = az.InferenceData(posterior=prior.prior)
    for flag in (False, True):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="pymc"):
            out = _arrange_groups(idata, model, data, flag, seed=2)
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Sampling")]
        assert "delta" in out.posterior_predictive
        if flag:
            assert len(said) == 1 and "y" in said[0], said
        else:
            assert said == []
