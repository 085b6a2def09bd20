"""Predict with a calibrated twin at new inputs, for known units or a new unit."""

from __future__ import annotations

from typing import Any, Sequence

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from .._rng import RNGLike, seed_int
from ..progress import Progress, progress_enabled
from ..exceptions import DataValidationError
from ..twin.declaration import ACCURACY_VAR, PredictSpec
from ._checks import check_predict_args
from ._threads import small_matrix_threads
from .results import TwinResult, full_posterior
from .simcheck import flag_unreliable

__all__ = ["predict"]


def predict(
    result: TwinResult,
    x_new: Any,
    *,
    unit: str | Sequence[str] | None = None,
    rng: RNGLike = None,
    include_y: bool = True,
    domain: Any = "calibration",
    progressbar: bool | None = None,
) -> xr.Dataset:
    """Posterior predictive of the twin at new inputs.

    The discrepancy is evaluated by its GP conditional given the posterior (not re-drawn from
    the prior); for a new unit, per-unit parameters are drawn from the fitted population and a
    per-unit discrepancy from its prior. The draws are computed in numpy, all at once, where
    the twin allows (``vvuq_twin.inference._fast_predictive``; ``VVUQ_TWIN_FAST_PREDICTIVE=0``
    uses ``pm.sample_posterior_predictive`` throughout).

    Parameters
    ----------
    result : TwinResult
        From :func:`~vvuq_twin.calibrate` (or :func:`~vvuq_twin.load_result` with ``twin`` and
        ``data``).
    x_new : array_like, shape (m,) or (m, d)
        New inputs (same columns as the calibration inputs).
    unit : str, sequence of str, "new" or None
        Unit of each new row (one label for all, or one per row), or ``"new"`` for a new unit
        drawn from the population. Required for twins with per-unit parameters.
    rng : Generator, int or None
        Seed for the predictive draws.
    include_y : bool
        Also draw new observations ``y`` (with observation noise).
    domain : "calibration", ValidationDomain or None
        Where the twin was validated. Default: the calibration inputs' domain (convex hull).
        Each prediction row gets ``extrapolation`` (distance measure, <= 1 inside) and
        ``out_of_domain`` (flag); an :class:`~vvuq_twin.exceptions.ExtrapolationWarning` is
        emitted when any row leaves it. ``None`` skips the check.
    progressbar : bool or None
        Progress feedback, on by default (see :mod:`vvuq_twin.progress`); ``False`` silences it.

    Returns
    -------
    xarray.Dataset
        ``eta``, ``delta``, ``zeta`` (and ``y``) with dims (chain, draw, obs); coordinate ``x``
        holds the inputs. For a new unit, the drawn per-unit parameters ``<name>_new`` too.
        Coordinate ``simulator_unreliable`` (chain, draw, obs) flags draws whose simulator
        output is non-finite, absurd or beyond the integrator's tolerance (see
        :mod:`vvuq_twin.inference.simcheck`; attribute ``n_unreliable_draws`` counts them and a
        :class:`~vvuq_twin.exceptions.SimulatorWarning` says so); the validation metrics refuse
        to score flagged draws. ``eta_accuracy`` holds an ODE's error indicator.
    """
    check_predict_args(result, unit=unit, rng=rng, include_y=include_y)  # before any build
    if result.twin is None or result.data is None:
        raise DataValidationError(
            "This result has no twin/data attached (it was loaded from disk). Load it with "
            "load_result(path, twin=..., data=...) to predict."
        )
    twin, data = result.twin, result.data
    X = np.asarray(x_new, dtype=float)
    if X.ndim == 1:
        X = X[:, None] if data.x.shape[1] == 1 else X[None, :]
    if X.ndim != 2 or X.shape[1] != data.x.shape[1]:
        raise DataValidationError(
            f"`x_new` must have {data.x.shape[1]} column(s) like the calibration inputs "
            f"{data.input_names}, got shape {np.shape(x_new)}."
        )
    if not np.all(np.isfinite(X)):
        raise DataValidationError("`x_new` contains NaN or inf.")
    new_unit = isinstance(unit, str) and unit == "new"
    unit_idx = None
    if unit is not None and not new_unit:
        if twin.hierarchy is None:
            raise DataValidationError(f"Twin {twin.name!r} has no hierarchy; do not pass `unit`.")
        _, units = twin.unit_index(data)
        labels = np.asarray([unit] * X.shape[0] if isinstance(unit, str) else unit).astype(str)
        if labels.shape != (X.shape[0],):
            raise DataValidationError(
                f"`unit` must be one label or one per row ({X.shape[0]}), got {labels.shape[0]}."
            )
        lookup = {u: i for i, u in enumerate(units)}
        unknown = sorted(set(labels.tolist()) - set(lookup))
        if unknown:
            raise DataValidationError(
                f"Unknown unit(s) {unknown}; known units: {list(units)[:10]}"
                f"{f' ... ({len(units)} in all)' if len(units) > 10 else ''}. Use unit='new' for a "
                "unit not in the calibration data."
            )
        unit_idx = np.array([lookup[u] for u in labels], dtype=int)
    from ._fast_predictive import predict_numpy

    # eta at the calibration inputs is simulated from the posterior draws themselves (a stored
    # posterior-predictive eta may belong to other draws, e.g. after assimilation)
    post = full_posterior(result.idata)
    seed = seed_int(rng)
    with small_matrix_threads(max(data.n, X.shape[0])), Progress(
            f"predict twin {twin.name!r} at {X.shape[0]} point(s)", progress_enabled(progressbar)) as prog:
        # numpy, vectorised over draws, where it applies (see ._fast_predictive); else PyMC
        pp = predict_numpy(twin, data, post, X, unit_idx, new_unit, include_y, seed)
        if pp is None:
            pp = _predict_pymc(result, twin, data, X, unit_idx, new_unit, include_y, seed, prog.bar)
    out = pp.rename({k: k[: -len("_new")] for k in ("eta_new", "delta_new", "zeta_new", "y_new",
                                                     f"{ACCURACY_VAR}_new") if k in pp})
    out = out.rename({"obs_new": "obs"}) if "obs_new" in out.dims else out
    out = flag_unreliable(out, data.y)
    for j, name in enumerate(data.input_names):
        out = out.assign_coords({name: ("obs", X[:, j])})
    if unit_idx is not None:
        out = out.assign_coords(unit_label=("obs", np.asarray(twin.unit_index(data)[1])[unit_idx]))
    if domain is not None:
        from ..domain import ValidationDomain

        dom = ValidationDomain.from_data(data) if isinstance(domain, str) and domain == "calibration" else domain
        out = dom.annotate(out, dim="obs")
    out.attrs.update({"declaration_hash": result.declaration_hash, "data_hash": result.data_hash,
                      "unit": "new" if new_unit else ("" if unit is None else str(unit))})
    return out


def _predict_pymc(result, twin, data, X, unit_idx, new_unit, include_y, seed, bar) -> xr.Dataset:
    """PyMC's path: ``pm.sample_posterior_predictive`` on the model built with ``predict_at``."""
    spec = PredictSpec(X=X, unit_idx=unit_idx, new_unit=new_unit)
    model = twin.build_model(data, predict_at=spec, check=False)
    names = ["eta_new", "delta_new", "zeta_new"] + (["y_new"] if include_y else [])
    if new_unit:
        names += [f"{p}_new" for p in twin.per_unit_names]
    if f"{ACCURACY_VAR}_new" in model.named_vars:
        names.append(f"{ACCURACY_VAR}_new")
    with model:
        return pm.sample_posterior_predictive(
            az.InferenceData(posterior=full_posterior(result.idata)), var_names=names, random_seed=seed, progressbar=bar,
            return_inferencedata=True,
        ).posterior_predictive
