"""compose: a system of twins in which an upstream twin's outputs drive a downstream twin.

Uncertainty is propagated by pushing joint draws through the chain: draw s of the upstream
predictive is mapped by ``link`` to the downstream inputs and evaluated with downstream
posterior draw s (independent twins: the downstream draws are randomly permuted so that the
pairing does not inherit any draw order). The downstream is either a calibrated twin (evaluated
through :func:`~vvuq_twin.predict`, discrepancy and noise included) or a NumPy function.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import arviz as az
import numpy as np
import xarray as xr

from .._rng import RNGLike, as_generator, seed_int
from ..exceptions import DataValidationError
from ..inference.predict import predict
from ..inference.results import TwinResult
from ._common import OperationError, require_result
from .lineage import Lineage, attach_lineage

__all__ = ["compose"]

_VARS = ("eta", "delta", "zeta", "y")


def _flat(pp: xr.Dataset, var: str) -> np.ndarray:
    return pp[var].stack(sample=("chain", "draw")).transpose("sample", "obs").values


def compose(
    upstream: TwinResult,
    downstream: TwinResult | Callable[[np.ndarray, np.random.Generator], np.ndarray],
    *,
    x_new: Any,
    link: Callable[[np.ndarray], np.ndarray] | None = None,
    upstream_var: str = "zeta",
    unit: str | Sequence[str] | None = None,
    downstream_unit: str | Sequence[str] | None = None,
    n_draws: int = 500,
    rng: RNGLike = None,
) -> xr.Dataset:
    """Propagate the upstream twin's predictive uncertainty through a downstream twin.

    Parameters
    ----------
    upstream : TwinResult
        The driving twin (e.g. a load twin).
    downstream : TwinResult or callable
        The driven twin (e.g. a fatigue twin), or ``fn(inputs, rng) -> outputs`` where
        ``inputs`` has shape (S, m, d) and the output (S, m).
    x_new : array_like, shape (m,) or (m, d_up)
        Upstream inputs.
    link : callable, optional
        ``link(u) -> inputs``: upstream values u of shape (S, m) to downstream inputs of shape
        (S, m, d) or (S, m). Default: identity (one downstream input).
    upstream_var : {"eta", "zeta", "y"}
        Which upstream quantity drives the downstream (default the true process ``zeta``).
    unit, downstream_unit : optional
        Units for hierarchical upstream / downstream twins.
    n_draws : int
        Number S of joint draws pushed through the chain.
    rng : Generator, int or None

    Returns
    -------
    xarray.Dataset
        Dims (sample, obs): ``upstream`` (driving values), ``x_down`` (sample, obs, input_down),
        and the downstream ``eta``, ``delta``, ``zeta``, ``y`` (twin) or ``output`` (function);
        ``attrs["lineage"]``.
    """
    require_result(upstream, "compose (upstream)")
    if upstream_var not in ("eta", "zeta", "y"):
        raise OperationError(f"compose: upstream_var must be 'eta', 'zeta' or 'y', got {upstream_var!r}.")
    if int(n_draws) < 2:
        raise OperationError(f"compose: n_draws must be >= 2, got {n_draws}.")
    is_twin = isinstance(downstream, TwinResult)
    if is_twin:
        require_result(downstream, "compose (downstream)")
    elif not callable(downstream):
        raise OperationError(
            "compose: downstream must be a TwinResult or a function fn(inputs, rng) -> outputs, "
            f"got {type(downstream).__name__}."
        )
    gen = as_generator(rng)
    s_up, s_pick, s_down, s_fn = (seed_int(gen) for _ in range(4))
    pp_up = predict(upstream, x_new, unit=unit, rng=s_up, include_y=upstream_var == "y")
    u_all = _flat(pp_up, upstream_var)
    S = int(n_draws)
    if u_all.shape[0] < S:
        raise OperationError(
            f"compose: the upstream posterior has {u_all.shape[0]} draws, fewer than n_draws={S}."
        )
    pick = np.random.default_rng(s_pick).choice(u_all.shape[0], size=S, replace=False)
    u = u_all[pick]
    m = u.shape[1]
    xin = np.asarray(link(u) if link is not None else u, dtype=float)
    if xin.ndim == 2:
        xin = xin[..., None]
    if xin.ndim != 3 or xin.shape[:2] != (S, m):
        raise DataValidationError(
            f"compose: link must map upstream values of shape ({S}, {m}) to downstream inputs of "
            f"shape ({S}, {m}) or ({S}, {m}, d); got {np.shape(xin)}."
        )
    if not np.all(np.isfinite(xin)):
        raise DataValidationError("compose: link returned NaN/inf downstream inputs.")
    out = xr.Dataset(
        {"upstream": (("sample", "obs"), u), "x_down": (("sample", "obs", "input_down"), xin)},
        coords={"sample": np.arange(S), "obs": np.arange(m)},
    )
    lin = Lineage()
    ins = [lin.add_result(upstream, label=f"{upstream.twin.name}(upstream)")]
    if is_twin:
        d = xin.shape[2]
        if d != downstream.data.x.shape[1]:
            raise DataValidationError(
                f"compose: link gives {d} downstream input(s) but the downstream twin "
                f"{downstream.twin.name!r} takes {downstream.data.x.shape[1]} "
                f"({downstream.data.input_names})."
            )
        post = downstream.posterior.stack(sample=("chain", "draw"))
        ns = post.sizes["sample"]
        if ns < S:
            raise OperationError(f"compose: the downstream posterior has {ns} draws, fewer than n_draws={S}.")
        order = np.random.default_rng(s_pick + 1).choice(ns, size=S, replace=False)
        sub = post.isel(sample=order).drop_vars(["sample", "chain", "draw"])
        sub = sub.rename({"sample": "draw"}).expand_dims(chain=[0]).assign_coords(draw=np.arange(S))
        thin = dataclasses.replace(downstream, idata=az.InferenceData(posterior=sub))
        # each downstream draw s is evaluated at all S*m inputs; keep the pairs (s, s)
        pp = predict(thin, xin.reshape(S * m, d), unit=downstream_unit, rng=s_down)
        for v in _VARS:
            if v in pp:
                vals = pp[v].isel(chain=0).values.reshape(S, S, m)
                out[v] = (("sample", "obs"), vals[np.arange(S), np.arange(S)])
        ins.append(lin.add_result(downstream, label=f"{downstream.twin.name}(downstream)"))
    else:
        y = np.asarray(downstream(xin, np.random.default_rng(s_fn)), dtype=float)
        if y.shape != (S, m):
            raise DataValidationError(
                f"compose: the downstream function returned shape {y.shape}; expected ({S}, {m}) "
                "(one output per draw and point)."
            )
        out["output"] = (("sample", "obs"), y)
        name = getattr(downstream, "__name__", type(downstream).__name__)
        from ..twin.simulators import source_hash

        ins.append(lin.add_node("component", f"function:{name}", source_hash(downstream),
                                component="downstream_function"))
    out.attrs.update({"upstream_var": upstream_var, "n_draws": S})
    lin.add_output("compose", "system", ins, upstream_var=upstream_var, n_draws=S)
    return attach_lineage(out, lin)
