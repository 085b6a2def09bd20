"""Checks of simulator outputs at posterior (or predictive) draws.

A draw's simulator output ``eta`` is *unreliable* when it is

* non-finite (NaN/inf);
* absurd: ``|eta| > ABSURD_FACTOR * scale`` with ``scale = max(max |y|, sd(y))`` over the
  finite calibration observations ``y`` (1 when both are 0) - a model of data of size ~1 that
  predicts 1e7 has failed numerically, not statistically; or
* outside the simulator's numerical tolerance: its accuracy indicator
  (:meth:`~vvuq_twin.twin.simulators.Simulator.accuracy`, e.g. the ODE local error estimate)
  exceeds 1.

:func:`~vvuq_twin.calibrate` raises :class:`~vvuq_twin.exceptions.SimulatorInstabilityError`
when any posterior draw is unreliable; :func:`~vvuq_twin.predict` counts them, warns
(:class:`~vvuq_twin.exceptions.SimulatorWarning`) and flags them with the coordinate
``simulator_unreliable`` that the validation metrics refuse to score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["ABSURD_FACTOR", "UNRELIABLE_COORD", "data_scale", "unreliable_draws", "describe"]

#: outputs beyond this multiple of the data scale are absurd
ABSURD_FACTOR: float = 1e6
#: coordinate (chain, draw, obs) flagging unreliable predictive draws
UNRELIABLE_COORD = "simulator_unreliable"


def data_scale(y: Any) -> float:
    """``max(max |y|, sd(y))`` over the finite values of ``y`` (1.0 when that is 0 or empty)."""
    v = np.asarray(y, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1.0
    s = max(float(np.max(np.abs(v))), float(np.std(v)))
    return s if s > 0 else 1.0


def unreliable_draws(eta: xr.DataArray, accuracy: xr.DataArray | None,
                     scale: float) -> tuple[xr.DataArray, dict[str, int]]:
    """Flag ``(chain, draw, obs)`` entries with unreliable simulator output.

    Returns
    -------
    flag : DataArray of bool
        True where the output is non-finite, absurd or beyond tolerance.
    counts : dict
        ``nonfinite``, ``absurd``, ``inaccurate`` (entries), ``draws`` (draws with any flagged
        entry), ``total_draws``, ``bound`` (the absurd bound used) and ``max_accuracy``.
    """
    vals = eta.values
    nonfinite = ~np.isfinite(vals)
    bound = ABSURD_FACTOR * float(scale)
    with np.errstate(invalid="ignore"):
        absurd = np.isfinite(vals) & (np.abs(vals) > bound)
    inacc = np.zeros_like(nonfinite)
    max_acc = float("nan")
    if accuracy is not None:
        a = np.asarray(accuracy.transpose(*eta.dims).values, dtype=float)
        inacc = ~(a <= 1.0)  # NaN counts as beyond tolerance
        max_acc = float(np.nanmax(a)) if np.any(np.isfinite(a)) else float("inf")
    flag = nonfinite | absurd | inacc
    sample_dims = [d for d in eta.dims if d in ("chain", "draw")]
    obs_axes = tuple(i for i, d in enumerate(eta.dims) if d not in sample_dims)
    per_draw = flag.any(axis=obs_axes) if obs_axes else flag
    counts = {
        "nonfinite": int(nonfinite.sum()),
        "absurd": int(absurd.sum()),
        "inaccurate": int(inacc.sum()),
        "draws": int(per_draw.sum()),
        "total_draws": int(per_draw.size),
        "bound": bound,
        "max_accuracy": max_acc,
    }
    return xr.DataArray(flag, dims=eta.dims, coords={d: eta.coords[d] for d in eta.dims if d in eta.coords}), counts


def describe(counts: dict[str, Any]) -> str:
    """One sentence describing the counts of :func:`unreliable_draws`."""
    parts = []
    if counts["nonfinite"]:
        parts.append(f"{counts['nonfinite']} non-finite output(s)")
    if counts["absurd"]:
        parts.append(f"{counts['absurd']} absurd output(s) (|eta| > {counts['bound']:.3g}, "
                     f"{ABSURD_FACTOR:g} x the data scale)")
    if counts["inaccurate"]:
        parts.append(f"{counts['inaccurate']} output(s) beyond the integrator's error tolerance "
                     f"(largest scaled error estimate {counts['max_accuracy']:.3g} > 1)")
    return (f"{counts['draws']} of {counts['total_draws']} draws have unreliable simulator "
            f"output: " + "; ".join(parts))


def pop_accuracy(idata: Any, name: str = "eta_accuracy") -> tuple[Any, xr.DataArray | None]:
    """Remove the accuracy Deterministic from the posterior (it is a check, not a parameter)."""
    post = idata.posterior
    if name not in post:
        return idata, None
    acc = post[name]
    idata.posterior = post.drop_vars(name)
    return idata, acc


def check_calibration(result: Any, accuracy: xr.DataArray | None) -> None:
    """Raise :class:`~vvuq_twin.exceptions.SimulatorInstabilityError` when posterior draws
    have unreliable simulator output; otherwise record the check in ``result.info``.

    The accuracy indicator (when the simulator has one) is stored as ``eta_accuracy`` in the
    posterior predictive group.
    """
    from ..exceptions import SimulatorInstabilityError

    pp = result.idata.posterior_predictive
    if "eta" not in pp:
        return
    if accuracy is not None:
        pp["eta_accuracy"] = accuracy
    flag, counts = unreliable_draws(pp["eta"], accuracy, data_scale(result.data.y))
    def _plain(v):  # JSON-exact: numpy ints -> int, NaN -> None (so a saved result compares equal)
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return float(v) if np.isfinite(v) else None
        return v

    result.info["simulator_check"] = {k: _plain(v) for k, v in counts.items()}
    if counts["draws"]:
        raise SimulatorInstabilityError(
            f"Calibration of twin {result.twin.name!r}: {describe(counts)}. The posterior cannot be "
            "trusted where the simulator failed numerically. For an ODESimulator, lower "
            "`max_step` (a stiff draw needs rate * max_step well below 3) or tighten the priors "
            "of fast rates; for other simulators, fix the parameter region that overflows. The "
            "result is attached as `.result` for inspection.",
            result=result, report=counts,
        )


def flag_unreliable(pred: xr.Dataset, y_data: Any) -> xr.Dataset:
    """Add the ``simulator_unreliable`` coordinate to a predictive Dataset (and warn when set)."""
    import warnings

    from ..exceptions import SimulatorWarning

    if "eta" not in pred:
        return pred
    acc = pred["eta_accuracy"] if "eta_accuracy" in pred else None
    flag, counts = unreliable_draws(pred["eta"], acc, data_scale(y_data))
    pred = pred.assign_coords({UNRELIABLE_COORD: flag})
    pred.attrs["n_unreliable_draws"] = counts["draws"]
    if counts["draws"]:
        warnings.warn(
            f"predict: {describe(counts)}. They are flagged by the coordinate "
            f"{UNRELIABLE_COORD!r}; scores of this predictive are refused until they are fixed "
            "(for an ODESimulator lower `max_step`; or drop those draws explicitly).",
            SimulatorWarning, stacklevel=3,
        )
    return pred
