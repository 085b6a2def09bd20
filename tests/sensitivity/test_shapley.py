"""Shapley effects against the closed form of a linear Gaussian model with correlated inputs."""

import numpy as np
import pytest
import xarray as xr

from vvuq_twin.sensitivity import (
    DependentInputsError,
    posterior_inputs,
    sensitivity,
    shapley_effects,
)
from vvuq_twin.testing.problems_sa import (
    linear_gaussian_shapley,
    linear_gaussian_space,
    linear_model,
)

BETA = np.array([1.0, 2.0, 3.0])
COV = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.8], [0.0, 1.8, 4.0]])  # rho(x2, x3) = 0.9
MU = np.zeros(3)


def test_closed_form_reference_properties():
    ref = linear_gaussian_shapley(BETA, COV)
    assert ref["Sh"].sum() == pytest.approx(1.0)
    # independent case: Shapley effects equal the (first == total) Sobol indices
    ind = linear_gaussian_shapley(BETA, np.diag([1.0, 0.25, 0.04]))
    contrib = BETA**2 * [1.0, 0.25, 0.04]
    np.testing.assert_allclose(ind["Sh"], contrib / contrib.sum())
    # Iooss & Prieur (2019), two correlated inputs: Sh = (b1^2 s1^2 (1 - rho^2/2) + rho b1 b2 s1 s2
    # + rho^2 b2^2 s2^2 / 2) / V
    b, s, rho = np.array([1.0, 2.0]), np.array([1.0, 1.5]), 0.6
    cov2 = np.array([[1.0, rho * 1.5], [rho * 1.5, 2.25]])
    V = b @ cov2 @ b
    sh1 = (b[0]**2 * s[0]**2 * (1 - rho**2 / 2) + rho * b[0] * b[1] * s[0] * s[1]
           + rho**2 * b[1]**2 * s[1]**2 / 2) / V
    assert linear_gaussian_shapley(b, cov2)["Sh"][0] == pytest.approx(sh1)


def test_shapley_linear_gaussian_correlated():
    space = linear_gaussian_space(MU, COV)
    ds = sensitivity(linear_model, inputs=space, method="shapley", n=1000, rng=3)
    ref = linear_gaussian_shapley(BETA, COV)["Sh"]
    est = ds["estimate"].sel(index="Sh").values
    assert ds.attrs["exact_permutations"] == 1
    assert ds.attrs["n_runs"] == 2000 + 6 * 2 * 1000 * 3
    assert est.sum() == pytest.approx(1.0)
    lo, hi = ds["ci_lower"].sel(index="Sh").values, ds["ci_upper"].sel(index="Sh").values
    assert np.all((lo <= ref) & (ref <= hi))
    assert np.abs(est - ref).max() < 0.03  # bootstrap half-widths at this budget are ~0.02
    # Sobol on the same (dependent) inputs is refused
    with pytest.raises(DependentInputsError, match="Shapley"):
        sensitivity(linear_model, inputs=space, method="sobol", n=64)


def test_shapley_random_permutations_and_reproducible():
    space = linear_gaussian_space(MU, COV)
    a = shapley_effects(linear_model, space, n_perm=4, n_outer=300, rng=1)
    b = shapley_effects(linear_model, space, n_perm=4, n_outer=300, rng=1)
    assert a.attrs["exact_permutations"] == 0 and a.attrs["n_permutations"] == 4
    xr.testing.assert_equal(a.drop_attrs(), b.drop_attrs())


def test_shapley_too_small_budget_is_flagged():
    space = linear_gaussian_space(MU, COV)
    ds = shapley_effects(linear_model, space, n_outer=4, n_var=8, rng=0)
    assert ds.attrs["converged"] == 0
    assert ds.attrs["max_change"] > ds.attrs["convergence_tol"]


def test_shapley_on_posterior_draws():
    gen = np.random.default_rng(0)
    draws = gen.multivariate_normal(MU, COV, size=(4, 1000))
    post = xr.Dataset(
        {"a": (("chain", "draw"), draws[..., 0]), "theta": (("chain", "draw", "k"), draws[..., 1:])},
        coords={"k": ["u", "v"]},
    )
    space = posterior_inputs(post)
    assert space.names == ["a", "theta[u]", "theta[v]"]
    ds = sensitivity(linear_model, inputs=post, method="shapley", n=800, rng=1)
    ref = linear_gaussian_shapley(BETA, COV)["Sh"]
    # Gaussian copula with empirical marginals: exact up to the sampling error of 4000 draws
    assert np.abs(ds["estimate"].values[:, 0] - ref).max() < 0.05
    with pytest.raises(DependentInputsError, match="method='shapley'"):
        sensitivity(linear_model, inputs=post, method="sobol", n=64)
