"""InferenceData groups of a twin result: observed vs constant data, PyMC's latent variables."""

from __future__ import annotations

from typing import Any

import arviz as az

__all__ = ["LATENT_GROUP", "data_groups", "add_latent_group", "full_posterior"]

#: InferenceData group holding PyMC's auxiliary variables (e.g. ``delta_gp_rotated_``)
LATENT_GROUP = "latent_posterior"


def data_groups(data: Any) -> dict[str, Any]:
    """``observed_data`` (only ``y``, on the dims of the likelihood) and ``constant_data``
    (the inputs ``x``, known sds ``y_sd``, the observed mask and unit labels) of a TwinData.

    The split is ArviZ's: ``az.plot_ppc`` / ``az.loo_pit`` pair every observed variable with
    the posterior predictive, so inputs must not sit in ``observed_data``.
    """
    import numpy as np
    import xarray as xr

    full = data.to_dataset()
    mask = np.asarray(data.observed_mask)
    if mask.all():
        obs = xr.Dataset({"y": full["y"].drop_vars([c for c in full["y"].coords if c != "obs"])})
    else:
        labels = [o for o, m in zip(data.obs, mask) if m]
        obs = xr.Dataset({"y": ("obs_observed", np.asarray(data.y, float)[mask])},
                         coords={"obs_observed": labels})
    const = full.drop_vars("y")
    if not mask.all():
        const["observed_mask"] = ("obs", mask)
    return {"observed_data": obs, "constant_data": const}


def add_latent_group(idata: az.InferenceData, latent: Any) -> None:
    """Store PyMC's auxiliary variables in :data:`LATENT_GROUP` (out of the posterior)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a non-standard group, on purpose
        idata.add_groups({LATENT_GROUP: latent})


def full_posterior(idata: az.InferenceData):
    """The posterior with the auxiliary variables of :data:`LATENT_GROUP` merged back in
    (what ``pm.sample_posterior_predictive`` needs to reproduce a latent GP)."""
    post = idata.posterior
    groups = idata.groups() if hasattr(idata, "groups") else ()  # duck-typed results have none
    if LATENT_GROUP in groups:
        post = post.merge(idata[LATENT_GROUP], compat="override")
    return post
