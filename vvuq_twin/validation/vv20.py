"""ASME V&V 20 comparison error and validation uncertainty.

ASME V&V 20-2009 (R2016), "Standard for Verification and Validation in Computational Fluid
Dynamics and Heat Transfer": the comparison error ``E = S - D`` between a simulation result ``S``
and an experimental value ``D`` relates to the (unknown) model error ``delta_model`` through
``delta_model in [E - k u_val, E + k u_val]`` with the validation uncertainty

    u_val = sqrt(u_num^2 + u_input^2 + u_D^2)

(numerical, input-propagated and data uncertainties; eq. 1-5.6). ``u_num`` comes from solution
verification (e.g. the GCI of :mod:`vvuq_twin.verification`), ``u_input`` from propagating input
uncertainty (sensitivity coefficients, or the spread of posterior predictive simulator output),
``u_D`` from the experiment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ._errors import MetricInputError

__all__ = ["vv20_comparison", "input_uncertainty", "vv20_from_predictive"]


def _nonneg(name: str, v: Any) -> np.ndarray:
    arr = np.asarray(v.values if isinstance(v, xr.DataArray) else v, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise MetricInputError(f"vv20_comparison: `{name}` contains NaN/inf values.")
    if np.any(arr < 0):
        raise MetricInputError(
            f"vv20_comparison: `{name}` is a standard uncertainty and must be >= 0, got min "
            f"{float(arr.min())}."
        )
    return arr


def vv20_comparison(
    simulation: Any,
    data: Any,
    *,
    u_num: Any = 0.0,
    u_input: Any = 0.0,
    u_data: Any = 0.0,
    k: float = 2.0,
) -> xr.Dataset:
    """ASME V&V 20 comparison error ``E = S - D`` and the interval ``E +- k u_val``.

    Parameters
    ----------
    simulation, data : float, array or DataArray
        Simulation result ``S`` and measured value ``D`` (broadcast; arrays get dim ``point``).
    u_num, u_input, u_data : float, array or DataArray
        Standard uncertainties (>= 0): numerical, input-propagated and data.
    k : float
        Coverage factor (2 gives ~95 % for a Gaussian error model).

    Returns
    -------
    xarray.Dataset
        ``E``, ``u_val``, ``lower`` and ``upper`` (the interval that contains ``delta_model``
        at the stated coverage), ``u_num``, ``u_input``, ``u_data``, and the boolean
        ``error_resolved`` (``|E| > k u_val``: the model error is distinguishable from the
        validation uncertainty); attrs ``k``.
    """
    if not np.isfinite(k) or k <= 0:
        raise MetricInputError(f"vv20_comparison: coverage factor k must be > 0, got {k}.")
    parts = {"u_num": u_num, "u_input": u_input, "u_data": u_data}
    for name, v in parts.items():
        _nonneg(name, v)
    for name, v in (("simulation", simulation), ("data", data)):
        arr = np.asarray(v.values if isinstance(v, xr.DataArray) else v, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise MetricInputError(f"vv20_comparison: `{name}` contains NaN/inf values.")

    def as_da(v: Any) -> xr.DataArray:
        if isinstance(v, xr.DataArray):
            return v.astype(float)
        arr = np.asarray(v, dtype=float)
        if arr.ndim == 0:
            return xr.DataArray(arr)
        if arr.ndim == 1:
            return xr.DataArray(arr, dims=("point",))
        raise MetricInputError(
            "vv20_comparison: pass arrays of at most one dim (dim `point`) or labelled "
            f"DataArrays; got shape {arr.shape}."
        )

    try:
        S, D, un, ui, ud = xr.broadcast(as_da(simulation), as_da(data), as_da(u_num),
                                        as_da(u_input), as_da(u_data))
    except ValueError as err:
        raise MetricInputError(f"vv20_comparison: inputs do not broadcast: {err}") from err
    E = S - D
    u_val = np.sqrt(un**2 + ui**2 + ud**2)
    ds = xr.Dataset(
        {
            "E": E,
            "u_val": u_val,
            "lower": E - k * u_val,
            "upper": E + k * u_val,
            "u_num": un,
            "u_input": ui,
            "u_data": ud,
            "error_resolved": np.abs(E) > k * u_val,
        }
    )
    ds.attrs["k"] = float(k)
    ds.attrs["standard"] = "ASME V&V 20-2009: delta_model in [E - k u_val, E + k u_val]"
    return ds


def input_uncertainty(
    sensitivities: Sequence[float] | np.ndarray,
    u_inputs: Sequence[float] | np.ndarray,
    correlation: np.ndarray | None = None,
) -> float:
    """Input-propagated standard uncertainty by the sensitivity-coefficient method.

    ``u_input^2 = s^T C s`` with ``s_i = (dS/dx_i) u_{x_i}`` and ``C`` the input correlation
    matrix (identity by default): ASME V&V 20 sec. 4.

    Parameters
    ----------
    sensitivities : array (d,)
        Partial derivatives ``dS/dx_i`` at the validation point.
    u_inputs : array (d,)
        Standard uncertainties of the inputs.
    correlation : array (d, d), optional
        Correlation matrix of the inputs.

    Returns
    -------
    float
    """
    s = np.asarray(sensitivities, dtype=float).ravel()
    u = np.asarray(u_inputs, dtype=float).ravel()
    if s.shape != u.shape:
        raise MetricInputError(
            f"input_uncertainty: {s.size} sensitivities but {u.size} input uncertainties; "
            "pass one of each per input."
        )
    if np.any(u < 0) or not np.all(np.isfinite(np.r_[s, u])):
        raise MetricInputError("input_uncertainty: values must be finite and u_inputs >= 0.")
    su = s * u
    if correlation is None:
        return float(np.sqrt(np.sum(su**2)))
    c = np.asarray(correlation, dtype=float)
    if c.shape != (s.size, s.size):
        raise MetricInputError(
            f"input_uncertainty: correlation must have shape {(s.size, s.size)}, got {c.shape}."
        )
    return float(np.sqrt(max(su @ c @ su, 0.0)))


def vv20_from_predictive(
    simulation_draws: xr.DataArray,
    data: Any,
    *,
    u_num: Any = 0.0,
    u_data: Any = 0.0,
    k: float = 2.0,
    sample_dims: Sequence[str] = ("chain", "draw"),
) -> xr.Dataset:
    """V&V 20 comparison where ``S`` and ``u_input`` come from posterior simulator draws.

    ``S`` is the mean and ``u_input`` the standard deviation over ``sample_dims`` of the
    simulator output (e.g. the ``eta`` variable of a twin's posterior predictive): the sampling
    (Monte Carlo) propagation of parameter uncertainty of V&V 20 sec. 4.

    Returns
    -------
    xarray.Dataset
        As :func:`vv20_comparison`.
    """
    missing = [d for d in sample_dims if d not in simulation_draws.dims]
    if missing:
        raise MetricInputError(
            f"vv20_from_predictive: sample dim(s) {missing} not in {simulation_draws.dims}."
        )
    S = simulation_draws.mean(dim=list(sample_dims))
    u_in = simulation_draws.std(dim=list(sample_dims), ddof=1)
    if not isinstance(data, xr.DataArray):
        data = xr.DataArray(np.asarray(data, dtype=float), dims=S.dims, coords=S.coords)
    return vv20_comparison(S, data, u_num=u_num, u_input=u_in, u_data=u_data, k=k)
