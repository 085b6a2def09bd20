"""Pointwise log-likelihood of a calibrated twin, for ``az.loo`` / ``az.waic`` / LOO-PIT.

For the built-in observation models (Gaussian, Student-t, log-normal) without a surrogate
simulator it is computed directly from the posterior predictive true process ``zeta`` and the
noise parameters in closed form (NumPy/SciPy, no compilation; milliseconds). Other observation
models fall back to :func:`pymc.compute_log_likelihood` on the twin's model.

With a marginalised GP discrepancy the likelihood of the model is one multivariate normal, which
has no pointwise factorisation; the pointwise values are then those of the equivalent latent
factorisation ``y_i | zeta_i`` with ``zeta = eta + delta`` and ``delta`` drawn from its Gaussian
conditional (the ``zeta`` of the posterior predictive group) - what LOO needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

__all__ = ["pointwise_log_likelihood", "has_closed_form"]


def has_closed_form(twin: Any) -> bool:
    """Whether the pointwise log-likelihood is computed in closed form (no compilation)."""
    from ..twin.observation import Gaussian, LogNormalObs, StudentT

    return type(twin.observation) in (Gaussian, StudentT, LogNormalObs) and _no_extra_var(twin)


def _noise_value(post: xr.Dataset, spec: Any, name: str) -> Any:
    from ..twin.priors import Prior

    if isinstance(spec, Prior):
        return post[name]
    return float(spec)


def pointwise_log_likelihood(twin: Any, data: Any, idata: Any) -> xr.Dataset:
    """Dataset with ``y`` (chain, draw, obs or obs_observed): ``log p(y_i | draw)``."""
    from ..twin.observation import Gaussian, LogNormalObs, StudentT

    mask = np.asarray(data.observed_mask)
    idx = np.flatnonzero(mask)
    dim = "obs" if mask.all() else "obs_observed"
    obs = twin.observation
    pp = idata.posterior_predictive
    fast = type(obs) in (Gaussian, StudentT, LogNormalObs) and "zeta" in pp and _no_extra_var(twin)
    if not fast:
        return _pymc_log_likelihood(twin, data, idata)
    post = idata.posterior
    zeta = pp["zeta"].isel(obs=idx).rename({"obs": dim}) if dim != "obs" else pp["zeta"]
    zeta = zeta.transpose("chain", "draw", dim)
    yv = np.asarray(data.y, float)[idx]
    sigma = _noise_value(post, obs.sigma, obs.NOISE_VARS["sigma"])
    var = xr.zeros_like(zeta) + sigma ** 2
    if obs.relative is not None:
        rel = _noise_value(post, obs.relative, obs.NOISE_VARS["relative"])
        base = np.log(zeta) if obs.positive else zeta
        var = var + (rel * np.abs(base)) ** 2
    if data.y_sd is not None:
        var = var + xr.DataArray(np.asarray(data.y_sd, float)[idx] ** 2, dims=dim)
    sd = np.sqrt(var.transpose("chain", "draw", dim)).values
    z = zeta.values
    y = yv[None, None, :]
    if type(obs) is Gaussian:
        ll = stats.norm.logpdf(y, z, sd)
    elif type(obs) is StudentT:
        nu = _noise_value(post, obs.nu, obs.NOISE_VARS["nu"])
        nu = np.asarray(nu.values if isinstance(nu, xr.DataArray) else nu, float)
        nu = nu[..., None] if nu.ndim == 2 else nu
        ll = stats.t.logpdf(y, nu, z, sd)
    else:
        ll = stats.norm.logpdf(np.log(y), np.log(z), sd) - np.log(y)
    coords = {"chain": zeta["chain"].values, "draw": zeta["draw"].values,
              dim: zeta[dim].values}
    return xr.Dataset({"y": (("chain", "draw", dim), ll)}, coords=coords)


def _no_extra_var(twin: Any) -> bool:
    from ..twin.simulators import SurrogateSimulator

    return not isinstance(twin.simulator, SurrogateSimulator)


def _pymc_log_likelihood(twin: Any, data: Any, idata: Any) -> xr.Dataset:
    import arviz as az
    import pymc as pm

    from ._groups import full_posterior

    marginal = twin.marginal_discrepancy()
    model = twin.build_model(data, check=False, conditional_roles=marginal)
    post = full_posterior(idata)
    if marginal and "delta" in idata.posterior_predictive:
        post = post.assign(delta=idata.posterior_predictive["delta"])
    ll = pm.compute_log_likelihood(az.InferenceData(posterior=post), model=model, var_names=["y"],
                                   extend_inferencedata=False, progressbar=False)
    return ll["log_likelihood"] if hasattr(ll, "groups") else ll
