"""HSGP discrepancy orthogonal to the simulator's sensitivity directions (Plumlee 2017).

Known answer: for a linear simulator ``eta = a + b x`` with Gaussian noise, a discrepancy whose
every draw is orthogonal (on the training inputs) to the directions ``d eta / d(a, b) = [1, x]``
leaves the generalised-least-squares estimate of ``(a, b)`` equal to the ordinary least-squares
estimate: with ``Phi~' G = 0`` the marginal covariance ``Sigma = s^2 I + Phi~ S Phi~'`` has
``Sigma G = s^2 G``. The unconstrained HSGP moves it. Both are checked in closed form (numpy)
and on the PyMC model the twin builds (its posterior mode, which for this Gaussian model is
the posterior mean).
"""

from __future__ import annotations

import numpy as np
import pytest

import vvuq_twin as vt
from vvuq_twin.exceptions import TwinSpecificationError

LS, ETA, SIGMA, PRIOR_SD = 0.7, 0.5, 0.1, 100.0


def _lines(X):
    return np.column_stack([np.ones(len(X)), np.asarray(X, float)[:, 0]])


def _data():
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0.0, 4.0, 60))
    y = 0.5 + 1.2 * x + 0.4 * np.sin(3.0 * x) + rng.normal(0.0, SIGMA, x.size)
    return vt.TwinData(x=x, y=y)


def _twin(orthogonal: bool):
    sim = vt.PytensorSimulator(lambda X, p: p["a"] + p["b"] * X[:, 0], name="line")
    disc = vt.HSGPDiscrepancy(m=12, c=1.5, ls=LS, eta=ETA, orthogonal_to=_lines if orthogonal else None)
    return vt.Twin("line_" + ("orth" if orthogonal else "free"), sim,
                   [vt.Parameter("a", vt.NormalPrior(0.0, PRIOR_SD)), vt.Parameter("b", vt.NormalPrior(0.0, PRIOR_SD))],
                   discrepancy=disc, observation=vt.GaussianObs(sigma=SIGMA))


def _gls(X, y, phi, sqrt_psd):
    G = _lines(X)
    S = SIGMA**2 * np.eye(len(y)) + (phi * sqrt_psd**2) @ phi.T
    Si = np.linalg.inv(S)
    return np.linalg.solve(G.T @ Si @ G + np.eye(2) / PRIOR_SD**2, G.T @ Si @ y)  # priors N(0, PRIOR_SD)


def _sqrt_psd(disc, X):
    """Square root of the ExpQuad spectral density at the basis frequencies, in closed form."""
    from vvuq_twin.twin.discrepancy import _hsgp_basis

    _, omega = _hsgp_basis(disc, X)
    w = omega[:, 0]
    return ETA * np.sqrt(np.sqrt(2 * np.pi) * LS * np.exp(-0.5 * (LS * w) ** 2))


def test_orthogonal_basis_leaves_the_least_squares_estimate_unchanged_closed_form():
    from vvuq_twin.twin.discrepancy import _hsgp_basis

    d = _data()
    X = np.asarray(d.x, float)
    ols = np.linalg.lstsq(_lines(X), d.y, rcond=None)[0]
    free, orth = _twin(False).discrepancy, _twin(True).discrepancy
    phi_f, _ = _hsgp_basis(free, X)
    phi_o, _ = _hsgp_basis(orth, X)
    # every basis function (hence every draw of delta) is orthogonal to [1, x] on the inputs
    np.testing.assert_allclose(_lines(X).T @ phi_o, 0.0, atol=1e-10)
    assert np.abs(_lines(X).T @ phi_f).max() > 0.1
    s = _sqrt_psd(free, X)
    gls_o, gls_f = _gls(X, d.y, phi_o, s), _gls(X, d.y, phi_f, s)
    np.testing.assert_allclose(gls_o, ols, rtol=1e-6)  # up to the N(0, 100) priors
    # the unconstrained discrepancy takes part of the line: a visibly different estimate
    assert np.abs(gls_f - ols).max() > 0.05


@pytest.fixture(scope="module")
def modes():
    import pymc as pm

    d = _data()
    out = {}
    for orth in (False, True):
        tw = _twin(orth)
        model = tw.build_model(d)
        with model:
            mp = pm.find_MAP(progressbar=False, seed=1, tol=1e-12, maxeval=20000)
        out[orth] = (tw, model, mp)
    return d, out


def test_posterior_mode_of_the_twin_is_ols_with_and_gls_without_the_constraint(modes):
    from vvuq_twin.twin.discrepancy import _hsgp_basis

    d, out = modes
    X = np.asarray(d.x, float)
    ols = np.linalg.lstsq(_lines(X), d.y, rcond=None)[0]
    _, _, mp_o = out[True]
    np.testing.assert_allclose([mp_o["a"], mp_o["b"]], ols, atol=2e-4)
    tw_f, _, mp_f = out[False]
    phi_f, _ = _hsgp_basis(tw_f.discrepancy, X)
    gls_f = _gls(X, d.y, phi_f, _sqrt_psd(tw_f.discrepancy, X))
    np.testing.assert_allclose([mp_f["a"], mp_f["b"]], gls_f, atol=2e-4)
    assert abs(mp_f["b"] - ols[1]) > 0.05


def test_model_delta_matches_the_numpy_basis_and_is_orthogonal(modes):
    d, out = modes
    tw, model, mp = out[True]
    X = np.asarray(d.x, float)
    coeffs = model["delta_hsgp_coeffs"]
    delta_model = model["delta"].eval({coeffs: np.asarray(mp["delta_hsgp_coeffs"])})
    draws = {k: np.asarray(mp[k])[None, ...] for k in ("delta_hsgp_coeffs",)}
    delta_np = tw.discrepancy.delta_numpy(draws, X, None, 0)[0]
    np.testing.assert_allclose(delta_model, delta_np, atol=1e-10)
    np.testing.assert_allclose(_lines(X).T @ delta_np, 0.0, atol=1e-9)


def test_frozen_keeps_the_calibration_projection_on_new_inputs():
    from vvuq_twin.twin.discrepancy import _hsgp_basis

    d = _data()
    X = np.asarray(d.x, float)
    orth = _twin(True).discrepancy
    fz = orth.frozen(X)
    assert fz.frozen_from_data and "orthogonal_inputs" in fz.frozen_from_data
    np.testing.assert_array_equal(np.asarray(fz.orthogonal_inputs), X)
    assert fz.spec() == orth.spec()  # the geometry derived from the data is not part of the declaration
    X_new = np.array([[0.5], [2.0], [3.9]])
    # the frozen basis at new inputs is the calibration basis there: projection coefficients from X
    phi_all, _ = _hsgp_basis(fz, np.vstack([X, X_new]))
    phi_cal, _ = _hsgp_basis(fz, X)
    np.testing.assert_allclose(phi_all[: len(X)], phi_cal, atol=1e-12)
    phi_new, _ = _hsgp_basis(fz, X_new)
    np.testing.assert_allclose(phi_all[len(X):], phi_new, atol=1e-12)
    # unfrozen, the projection would be recomputed on the three new inputs (and differ)
    phi_unfrozen_new, _ = _hsgp_basis(orth, X_new)
    assert np.abs(phi_unfrozen_new - phi_new).max() > 1e-3
    # the declaration records which directions (by source) the discrepancy is orthogonal to
    assert "orthogonal_to" in orth.spec() and "orthogonal_to" not in _twin(False).discrepancy.spec()


def test_orthogonal_to_bad_input_is_refused_before_sampling():
    with pytest.raises(TwinSpecificationError, match="orthogonal_to must be a callable"):
        vt.HSGPDiscrepancy(orthogonal_to=np.ones((3, 2)))
    with pytest.raises(TwinSpecificationError, match="orthogonal_inputs is given but orthogonal_to is not"):
        vt.HSGPDiscrepancy(orthogonal_inputs=[[0.0], [1.0]])
    X = np.linspace(0, 1, 10)[:, None]
    bad_shape = vt.HSGPDiscrepancy(orthogonal_to=lambda X: np.ones((3, 2)))
    with pytest.raises(TwinSpecificationError, match=r"returned shape \(3, 2\) for 10 inputs"):
        bad_shape.directions(X)
    nan = vt.HSGPDiscrepancy(orthogonal_to=lambda X: np.full((len(X), 1), np.nan))
    with pytest.raises(TwinSpecificationError, match="NaN or inf"):
        nan.directions(X)
    dup = vt.HSGPDiscrepancy(m=4, orthogonal_to=lambda X: np.column_stack([X[:, 0], 2 * X[:, 0]]))
    with pytest.raises(TwinSpecificationError, match="linearly dependent"):
        dup._ortho_coef(X, np.ones((10, 4)))
