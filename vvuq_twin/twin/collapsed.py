"""Collapsed form of a twin with an HSGP discrepancy: the basis coefficients integrated out.

For a twin whose discrepancy is an :class:`~vvuq_twin.twin.discrepancy.HSGPDiscrepancy`
(shared, not per unit) and whose noise is Gaussian (:class:`~vvuq_twin.twin.observation.Gaussian`)
or a stationary AR(1) process (:class:`~vvuq_twin.twin.observation.GaussianAR1Obs`), the
observations are linear-Gaussian in the HSGP coefficients ``beta ~ N(0, I)``::

    y = eta(theta) + Phi S^(1/2) beta + e,     e ~ N(0, Sigma_noise)

With ``W`` the whitening operator of the noise (``W e ~ N(0, I)``: ``diag(1/sd)`` for Gaussian
noise; for AR(1) ``u_0 = e_0 sqrt(1 - phi^2) / sd_0``, ``u_i = (e_i - phi e_{i-1}) / sd_i``),
``r = y - eta``, ``u = W r``, ``G = W Phi S^(1/2)`` (n x m) and ``A = I + G'G``, the marginal
log-density of ``y`` given ``theta`` and the hyperparameters is (Woodbury, matrix determinant lemma)::

    log p(y | theta, ls, eta_gp, noise) = log N(r; 0, Sigma_noise) - log det(chol A) + |chol(A)^-1 G'u|^2 / 2

and ``beta | theta, ls, eta_gp, noise, y ~ N(A^-1 G'u, A^-1)``. This is the **same statistical
model** as the latent one (same prior, same joint posterior); only the sampler's geometry
changes: NUTS explores the physical parameters and the hyperparameters alone (about 10
dimensions instead of about 60) and the coefficients are drawn exactly from their Gaussian
conditional afterwards. It removes the slow mixing of the noise parameters and the discrepancy
amplitude that comes from their coupling with the coefficients (a smooth discrepancy and an
autocorrelated noise explain the same residual).

- :func:`collapsible` -- whether (and why not) a twin has a collapsed form.
- :func:`collapsed_model` -- the PyMC model without the coefficients (the likelihood is a
  ``pm.Potential``: it is for posterior sampling only, not for prior predictive draws).
- :func:`collapsed_loglik_numpy` -- the same marginal log-density in numpy (per draw).
- :func:`draw_coefficients` -- the coefficients' exact conditional draws for posterior draws.
- :func:`latent_posterior_variables` -- the latent model's coefficients, ``delta`` and ``zeta``
  for posterior draws of the collapsed model.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..exceptions import TwinSpecificationError

__all__ = ["collapsible", "collapsed_model", "collapsed_loglik_numpy", "draw_coefficients",
           "latent_posterior_variables", "COLLAPSED_LIKELIHOOD"]

#: name of the marginal log-likelihood term in the collapsed model
COLLAPSED_LIKELIHOOD = "y_collapsed_loglik"


def collapsible(twin: Any) -> tuple[bool, str]:
    """Whether ``twin`` has a collapsed form (:mod:`.collapsed`), and if not, why not."""
    from .discrepancy import HSGPDiscrepancy
    from .observation import Gaussian, GaussianAR1Obs

    d, o = twin.discrepancy, twin.observation
    if not isinstance(d, HSGPDiscrepancy):
        return False, f"the discrepancy is {type(d).__name__}, not HSGPDiscrepancy"
    if d.per_unit:
        return False, "the HSGP discrepancy is per unit (only a shared one is collapsed)"
    if type(o) not in (Gaussian, GaussianAR1Obs):
        return False, f"the observation model is {type(o).__name__}, not Gaussian or GaussianAR1Obs"
    if o.relative is not None:
        return False, "the noise has a relative term (its sd depends on the discrepancy)"
    if any(p.per_unit for p in twin.parameters):
        return False, "the twin has per-unit parameters"
    return True, ""


def _check(twin: Any, data: Any) -> None:
    ok, why = collapsible(twin)
    if not ok:
        raise TwinSpecificationError(
            f"Twin {twin.name!r} has no collapsed form: {why}. The coefficients of an HSGP discrepancy "
            "can be integrated out only when the observations are linear-Gaussian in them; calibrate the "
            "latent model instead (collapse_discrepancy=False).")
    if twin.hierarchy is not None:
        raise TwinSpecificationError(f"Twin {twin.name!r} has a hierarchy; the collapsed form has none.")


def _whiten_pt(obs: Any, v: Any, sd: Any, noise: Mapping[str, Any]) -> Any:
    """``W v`` along axis 0 (v: (n,) or (n, m)); ``sd`` (n,)."""
    from .observation import GaussianAR1Obs

    s = sd if v.ndim == 1 else sd[:, None]
    if isinstance(obs, GaussianAR1Obs):
        phi = noise["phi"]
        first = v[:1] * pt.sqrt(1.0 - phi**2)
        rest = v[1:] - phi * v[:-1]
        return pt.concatenate([first, rest], axis=0) / s
    return v / s


def _logdet_w_pt(obs: Any, sd: Any, noise: Mapping[str, Any]) -> Any:
    from .observation import GaussianAR1Obs

    out = -pt.sum(pt.log(sd))
    if isinstance(obs, GaussianAR1Obs):
        out = out + 0.5 * pt.log(1.0 - noise["phi"] ** 2)
    return out


def collapsed_model(twin: Any, data: Any, *, check: bool = True) -> pm.Model:
    """The PyMC model of ``twin`` for ``data`` with the HSGP coefficients integrated out.

    Same free variables as :meth:`Twin.build_model` (same names, priors and transforms) except
    ``delta_hsgp_coeffs``; ``eta`` (the simulator output) is a Deterministic; the observations
    are the data container ``y_observed`` (so a compiled model takes new data with
    ``with_data``). See the module docstring for the log-density.

    Raises
    ------
    TwinSpecificationError
        When the twin has no collapsed form (:func:`collapsible`).
    """
    from .declaration import OBSERVED_DATA_NAME
    from .discrepancy import BuildContext
    from .observation import GaussianAR1Obs

    _check(twin, data)
    if check:
        twin.check(data)
    mask = np.asarray(data.observed_mask)
    idx = np.flatnonzero(mask)
    n_obs = idx.size
    coords = {"obs": list(data.obs), "input": list(data.input_names)}
    with pm.Model(coords=coords) as model:
        values = {p.name: p.prior.dist(p.name) for p in twin.parameters}
        X = pt.as_tensor_variable(data.x)
        eta = pm.Deterministic("eta", twin.simulator(X, values), dims="obs")
        extra = twin.simulator.predictive_variance(X, values)
        ctx = BuildContext(X=data.x, unit_idx=None, n_units=0)
        _, phi, sqrt_psd, _, _ = twin.discrepancy._basis(ctx, "delta")
        noise = twin.observation.register_noise()
        sd = twin.observation.scale(noise, eta, data.y_sd, extra)
        sd_vec = (sd if getattr(sd, "ndim", 0) == 1 else pt.ones((data.n,)) * sd)[idx]
        y_obs = pm.Data(OBSERVED_DATA_NAME, np.asarray(data.y, float)[idx])
        r = y_obs - eta[idx]
        u = _whiten_pt(twin.observation, r, sd_vec, noise)
        Phi = np.asarray(phi.eval(), float)[idx]  # the basis is constant (geometry frozen)
        nb = Phi.shape[1]
        if data.y_sd is None and extra is None:
            # constant noise sd: G'G = S^(1/2) (B Phi)'(B Phi) S^(1/2) / sd^2 from constant
            # m x m matrices (B the AR(1) difference operator), O(m^2) per evaluation
            s0 = sd_vec[0]
            if isinstance(twin.observation, GaussianAR1Obs):
                p = noise["phi"]
                P00 = np.outer(Phi[0], Phi[0])
                Pa, Pb, Cm = Phi[1:].T @ Phi[1:], Phi[:-1].T @ Phi[:-1], Phi[1:].T @ Phi[:-1]
                BtB = (pt.as_tensor_variable(P00 + Pa) - p * pt.as_tensor_variable(Cm + Cm.T)
                       + p**2 * pt.as_tensor_variable(Pb - P00))
                wphi = _whiten_pt(twin.observation, pt.as_tensor_variable(Phi), pt.ones((n_obs,)), noise)
            else:
                BtB = pt.as_tensor_variable(Phi.T @ Phi)
                wphi = pt.as_tensor_variable(Phi)
            GtG = sqrt_psd[:, None] * BtB * sqrt_psd[None, :] / s0**2
            Gtu = sqrt_psd * (wphi.T @ u) / s0
        else:
            G = _whiten_pt(twin.observation, pt.as_tensor_variable(Phi) * sqrt_psd[None, :], sd_vec, noise)
            GtG, Gtu = G.T @ G, G.T @ u
        A = pt.eye(nb) + GtG
        Lc = pt.linalg.cholesky(A)
        c = pt.linalg.solve_triangular(Lc, Gtu, lower=True)
        n = idx.size
        ll = (-0.5 * pt.sum(u**2) - 0.5 * n * np.log(2.0 * np.pi) + _logdet_w_pt(twin.observation, sd_vec, noise)
              - pt.sum(pt.log(pt.diag(Lc))) + 0.5 * pt.sum(c**2))
        pm.Potential(COLLAPSED_LIKELIHOOD, ll)
    return model


# ------------------------------------------------------------------------------------ numpy
def _whiten_np(ar1: bool, v: np.ndarray, sd: np.ndarray, phi: np.ndarray | None) -> np.ndarray:
    """``W v`` per draw along axis 1: ``v`` (d, n) or (d, n, m); ``sd`` (d, n); ``phi`` (d,)."""
    s = sd if v.ndim == 2 else sd[:, :, None]
    if ar1:
        p = phi.reshape(-1, *([1] * (v.ndim - 1)))
        w = np.concatenate([v[:, :1] * np.sqrt(1.0 - p**2), v[:, 1:] - p * v[:, :-1]], axis=1)
        return w / s
    return v / s


def _pieces(twin: Any, data: Any, draws: Mapping[str, Any], eta: np.ndarray):
    """Per draw: whitened residual u (d, n_obs), whitened basis G (d, n_obs, m), log|det W| (d,)."""
    from .discrepancy import _default_ls, _hsgp_basis, _psd_np, _value_np
    from .observation import GaussianAR1Obs

    _check(twin, data)
    disc, obs = twin.discrepancy, twin.observation
    X = np.asarray(data.x, float)
    mask = np.asarray(data.observed_mask)
    eta = np.atleast_2d(np.asarray(eta, float))
    d = eta.shape[0]
    phi_basis, omega = _hsgp_basis(disc, X)
    ls_p = disc.ls if disc.ls is not None else _default_ls(X, disc._cols(X))
    ls = _value_np(ls_p, draws, "delta_ls", d)
    amp = _value_np(disc.eta, draws, "delta_eta", d)
    sqrt_psd = amp[:, None] * np.sqrt(_psd_np(disc.kernel, omega, ls))  # (d, m)
    noise = obs.noise_values(draws, d)
    y_sd = None if data.y_sd is None else np.asarray(data.y_sd, float)
    sd = obs.scale_numpy(noise, eta, y_sd) * np.ones_like(eta)
    sd = sd[:, mask]
    y = np.asarray(data.y, float)[mask]
    ar1 = isinstance(obs, GaussianAR1Obs)
    ph = np.asarray(noise["phi"], float).reshape(d) if ar1 else None
    u = _whiten_np(ar1, y[None, :] - eta[:, mask], sd, ph)
    G = _whiten_np(ar1, phi_basis[mask][None, :, :] * sqrt_psd[:, None, :], sd, ph)
    logdet_w = -np.log(sd).sum(axis=1) + (0.5 * np.log(1.0 - ph**2) if ar1 else 0.0)
    return u, G, logdet_w


def _conditional(twin: Any, data: Any, draws: Mapping[str, Any], eta: np.ndarray):
    """Per draw: ``u``, ``log|det W|``, ``L = chol(A)`` and ``c = L^-1 G'u`` (module docstring)."""
    u, G, logdet_w = _pieces(twin, data, draws, eta)
    A = np.eye(G.shape[2])[None] + np.swapaxes(G, 1, 2) @ G
    L = np.linalg.cholesky(A)
    c = np.linalg.solve(L, np.swapaxes(G, 1, 2) @ u[..., None])[..., 0]
    return u, logdet_w, L, c


def collapsed_loglik_numpy(twin: Any, data: Any, draws: Mapping[str, Any], eta: np.ndarray) -> np.ndarray:
    """The collapsed model's marginal log-likelihood per draw (numpy), shape (n_draws,).

    ``draws`` holds the hyperparameters and noise variables by model name (leading draw axis);
    ``eta`` the simulator output at ``data.x`` per draw, (n_draws, n).
    """
    u, logdet_w, L, c = _conditional(twin, data, draws, eta)
    n = u.shape[1]
    return (-0.5 * (u**2).sum(axis=1) - 0.5 * n * np.log(2 * np.pi) + logdet_w
            - np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1) + 0.5 * (c**2).sum(axis=1))


def draw_coefficients(twin: Any, data: Any, draws: Mapping[str, Any], eta: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """Exact conditional draws of the HSGP coefficients, one per posterior draw: (n_draws, m).

    ``beta | rest ~ N(A^-1 G'u, A^-1)`` (module docstring): with ``A = L L'``,
    ``beta = L'^-1 (L^-1 G'u + z)``, ``z ~ N(0, I)``.
    """
    _, _, L, c = _conditional(twin, data, draws, eta)
    z = rng.standard_normal(c.shape)
    return np.linalg.solve(np.swapaxes(L, 1, 2), (c + z)[..., None])[..., 0]


def latent_posterior_variables(twin: Any, data: Any, draws: Mapping[str, Any],
                               rng: np.random.Generator) -> dict[str, np.ndarray]:
    """What the latent model has and the collapsed one lacks, per posterior draw.

    ``draws`` (leading draw axis) holds the collapsed model's variables, ``eta`` included.
    Returns ``{"delta_hsgp_coeffs": (d, m), "delta": (d, n), "zeta": (d, n)}``: the coefficients
    from their exact conditional (:func:`draw_coefficients`) and the discrepancy and true
    process they give.
    """
    eta = np.asarray(draws["eta"], float)
    beta = draw_coefficients(twin, data, draws, eta, rng)
    name = "delta_hsgp_coeffs"
    full = {**draws, name: beta}
    delta = twin.discrepancy.delta_numpy(full, np.asarray(data.x, float), None, 0)
    return {name: beta, "delta": delta, "zeta": twin.observation.combine_numpy(eta, delta)}
