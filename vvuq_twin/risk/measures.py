"""Risk measures with Monte Carlo standard errors, on NumPy samples or xarray draws.

Conventions
-----------
Samples are *losses*: larger is worse. "Failure" means ``X > threshold``; for a limit state
``g`` that fails when ``g <= 0`` pass ``-g`` with ``threshold=0``.

Every public function accepts

* a 1-D NumPy array (optionally with ``weights``, e.g. importance weights; they are
  self-normalised) and returns a frozen :class:`RiskEstimate`;
* an :class:`xarray.DataArray`, reducing over named sample dimensions (``("chain", "draw")`` by
  default when both are present, otherwise ``sample_dims`` must be given) and returns an
  :class:`xarray.Dataset` with variables ``estimate``, ``se``, ``ci_low``, ``ci_high`` and
  ``n_eff`` over the remaining dimensions.

Standard errors come from the influence function of each functional (delta method):
``se_method="iid"`` treats the draws as independent (weighted: ``sqrt(sum w_i^2 psi_i^2)``);
``se_method="ess"`` divides the standard deviation of the influence values by ArviZ's
autocorrelation-aware effective sample size over ``(chain, draw)`` -- use it for MCMC draws.
``"auto"`` picks ``"ess"`` when the sample dims are exactly ``chain`` and ``draw`` and no
weights are given, else ``"iid"``. Intervals are ``estimate -/+ z se`` (probabilities: Wilson
score interval with the effective sample size, clipped to [0, 1]).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

import numpy as np
import xarray as xr

from . import _array
from .errors import RiskInputError, TailSampleWarning

__all__ = [
    "RiskEstimate",
    "quantile",
    "value_at_risk",
    "superquantile",
    "conditional_value_at_risk",
    "buffered_failure_probability",
    "failure_probability",
    "expected_loss",
    "entropic_risk",
]

ArrayOrDA = Union[np.ndarray, Sequence[float], xr.DataArray]
_PROB_MEASURES = ("failure_probability", "buffered_failure_probability")


@dataclass(frozen=True)
class RiskEstimate:
    """A risk figure from samples, with its Monte Carlo uncertainty.

    Attributes
    ----------
    measure : str
        Name of the risk measure.
    estimate, se : float
        Point estimate and Monte Carlo standard error.
    ci_low, ci_high : float
        Confidence interval at level ``confidence``.
    n_eff : float
        Effective sample size behind ``se`` (``n``, Kish's ESS, or ArviZ's ESS).
    confidence : float
        Level of the interval.
    se_method : str
        ``"iid"`` or ``"ess"`` (see module docstring).
    params : dict
        The measure's parameters (``alpha``, ``threshold``, ``theta``).
    flags : tuple of str
        ``("insufficient tail draws",)`` when fewer than :data:`MIN_TAIL` effective draws lie
        beyond the quantile a quantile/superquantile depends on; ``se`` and the interval are then
        NaN (unknown), never a spurious 0.
    """

    measure: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    n_eff: float
    confidence: float
    se_method: str
    params: dict[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    @property
    def insufficient_tail(self) -> bool:
        """True when too few draws inform the tail (see ``flags``)."""
        return INSUFFICIENT_TAIL in self.flags

    def to_xarray(self) -> xr.Dataset:
        """Return the figures as a NetCDF-saveable :class:`xarray.Dataset`."""
        attrs = {"measure": self.measure, "confidence": self.confidence, "se_method": self.se_method}
        attrs.update({k: float(v) for k, v in self.params.items()})
        return xr.Dataset(
            {
                "estimate": self.estimate,
                "se": self.se,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "n_eff": self.n_eff,
            },
            attrs=attrs,
        )


def _core(
    measure: str,
    x: np.ndarray,
    w: np.ndarray | None,
    param: float | None,
    *,
    se_method: str,
    confidence: float,
    nan_policy: str,
    where: str,
) -> tuple[float, float, float, float, float]:
    """Estimate, se, ci_low, ci_high, n_eff for one sample block.

    ``x`` is 1-D for ``se_method="iid"`` and ``(chain, draw)`` for ``"ess"``.
    """
    chain_shape = x.shape if se_method == "ess" else None
    xc, wc = _array.clean_samples(x, w, func=measure, nan_policy=nan_policy, where=where)
    if se_method == "ess" and xc.shape != chain_shape:
        raise RiskInputError(
            f"{measure}: se_method='ess' needs complete (chain, draw) draws but NaNs were "
            "omitted; use se_method='iid' or remove the failed draws."
        )
    kernel = _array.KERNELS[measure]
    est, psi = kernel(xc, wc) if param is None else kernel(xc, wc, param)
    se, n_eff = _array.standard_error(psi, wc, se_method, chain_shape)
    n_kish = float(_array._kish(wc, xc.size))
    _warn_thin_tail(measure, est, param, n_kish, where)
    if measure in ("quantile", "superquantile") and n_kish * (1 - float(param)) < MIN_TAIL:  # type: ignore[arg-type]
        # the influence function has (almost) no support: its standard error would be 0 or
        # meaningless; report it as unknown (NaN) and flag it (RiskEstimate.flags)
        return est, float("nan"), float("nan"), float("nan"), n_eff
    if measure in _PROB_MEASURES:
        if measure == "failure_probability" and se > 0:
            n_eff = est * (1 - est) / se**2
        if measure == "failure_probability":
            lo, hi = _array.wilson_ci(est, n_eff, confidence)
        else:
            lo, hi = _array.normal_ci(est, se, confidence)
            lo, hi = max(lo, 0.0), min(hi, 1.0)
    else:
        lo, hi = _array.normal_ci(est, se, confidence)
    return est, se, lo, hi, n_eff


#: fewest (effective) draws beyond the quantile for which a quantile/superquantile gets a
#: standard error; below it the se and interval are NaN and the estimate is flagged
MIN_TAIL = 10
#: the flag of an estimate with fewer than MIN_TAIL tail draws
INSUFFICIENT_TAIL = "insufficient tail draws"


def _warn_thin_tail(measure: str, est: float, param: float | None, n: float, where: str) -> None:
    """Warn when fewer than ``MIN_TAIL`` (effective) draws inform a tail figure."""
    if measure in ("quantile", "superquantile"):
        tail = n * (1 - float(param))  # type: ignore[arg-type]
        fix = "use more draws or a lower alpha"
    elif measure in _PROB_MEASURES:
        tail = n * est
        fix = ("use more draws, or subset_simulation / importance_sampling for rare events"
               if measure == "failure_probability" else "use more draws")
    else:
        return
    if tail < MIN_TAIL:
        warnings.warn(
            f"{measure}: only about {tail:.1f} of {n:.0f} draws of {where} lie in the tail this "
            f"figure depends on (< {MIN_TAIL}); the standard error and interval are unreliable, "
            f"{fix}.",
            TailSampleWarning,
            stacklevel=5,
        )


def _resolve_dims(da: xr.DataArray, sample_dims: str | Sequence[str] | None, func: str) -> tuple[str, ...]:
    if sample_dims is None:
        if "chain" in da.dims and "draw" in da.dims:
            return ("chain", "draw")
        raise RiskInputError(
            f"{func}: the DataArray has dims {tuple(da.dims)} but no ('chain', 'draw') pair; "
            "pass sample_dims naming the dimension(s) that index the samples, e.g. "
            "sample_dims='sample'."
        )
    dims = (sample_dims,) if isinstance(sample_dims, str) else tuple(sample_dims)
    missing = [d for d in dims if d not in da.dims]
    if missing or not dims:
        raise RiskInputError(
            f"{func}: sample_dims {dims} not all found in the DataArray; missing {missing}. "
            f"Valid dims are {tuple(da.dims)}."
        )
    return dims


def _dispatch(
    measure: str,
    samples: ArrayOrDA,
    param: float | None,
    *,
    weights: Any,
    sample_dims: str | Sequence[str] | None,
    se_method: str,
    confidence: float,
    nan_policy: str,
    params: dict[str, Any],
    name: str | None = None,
) -> RiskEstimate | xr.Dataset:
    confidence = _array.check_alpha(confidence, measure, "confidence")
    if se_method not in ("auto", "iid", "ess"):
        raise RiskInputError(
            f"The 'se_method' parameter of {measure} must be one of 'auto', 'iid', 'ess'; "
            f"got {se_method!r}."
        )
    if isinstance(samples, xr.Dataset):
        raise TypeError(
            f"{measure} takes a DataArray, not a Dataset; select a variable, e.g. "
            f"{measure}(ds['y'], ...)."
        )
    if hasattr(samples, "posterior_predictive") or hasattr(samples, "posterior"):
        raise TypeError(
            f"{measure} takes a DataArray; select one, e.g. "
            f"{measure}(idata.posterior_predictive['y'], ...)."
        )
    if isinstance(samples, xr.DataArray):
        dims = _resolve_dims(samples, sample_dims, measure)
        method = se_method
        if method == "auto":
            method = "ess" if set(dims) == {"chain", "draw"} and weights is None else "iid"
        if method == "ess":
            if weights is not None:
                raise RiskInputError(
                    f"{measure}: se_method='ess' does not support weights; use se_method='iid'."
                )
            if set(dims) != {"chain", "draw"}:
                raise RiskInputError(
                    f"{measure}: se_method='ess' needs sample_dims ('chain', 'draw'); got {dims}."
                )
            dims = ("chain", "draw")
            stacked = samples
            core = list(dims)
        else:
            stacked = samples.stack(__sample__=dims) if len(dims) > 1 else samples.rename(
                {dims[0]: "__sample__"}
            )
            core = ["__sample__"]
        where = f"DataArray {samples.name!r}" if samples.name is not None else "the DataArray"

        def block(arr: np.ndarray, *wargs: np.ndarray) -> tuple[float, ...]:
            warr = wargs[0] if wargs else None
            return _core(
                measure, arr, warr, param, se_method=method, confidence=confidence,
                nan_policy=nan_policy, where=where,
            )

        args: list[Any] = [stacked]
        in_core = [core]
        if weights is not None:
            wda = weights if isinstance(weights, xr.DataArray) else xr.DataArray(
                np.asarray(weights, dtype=float), dims=dims
            )
            if len(dims) > 1:
                wda = wda.stack(__sample__=dims)
            else:
                wda = wda.rename({dims[0]: "__sample__"})
            args.append(wda)
            in_core.append(core)
        outs = xr.apply_ufunc(
            block,
            *args,
            input_core_dims=in_core,
            output_core_dims=[[]] * 5,
            vectorize=True,
        )
        names = ("estimate", "se", "ci_low", "ci_high", "n_eff")
        ds = xr.Dataset({n: o.astype(float) for n, o in zip(names, outs)})
        attrs = {"measure": measure, "confidence": confidence, "se_method": method,
                 "sample_dims": list(dims)}
        attrs.update({k: float(v) for k, v in params.items()})
        if measure in ("quantile", "superquantile"):
            thin = bool((np.isnan(ds["se"]) & np.isfinite(ds["estimate"])).any())
            if thin:
                attrs["flags"] = INSUFFICIENT_TAIL
        ds.attrs = attrs
        if name is not None:
            ds.attrs["variable"] = str(name)
        elif samples.name is not None:
            # xarray keeps a name through reductions and arithmetic with scalars, so a derived
            # quantity (zeta.max("obs"), 2 * zeta) arrives under its source's name: say so
            ds.attrs["variable"] = str(samples.name)
            ds.attrs["variable_note"] = (
                f"name of the DataArray passed in ({samples.name!r}); for a derived quantity pass "
                f"{measure}(..., name='...')"
            )
        return ds
    x = np.asarray(samples, dtype=float)
    if x.ndim != 1:
        raise RiskInputError(
            f"{measure}: NumPy samples must be 1-D, got shape {x.shape}; wrap multi-dimensional "
            "draws in an xarray.DataArray and name the sample_dims."
        )
    if se_method == "ess":
        raise RiskInputError(
            f"{measure}: se_method='ess' needs a DataArray with ('chain', 'draw') dims; "
            "NumPy samples are treated as independent (se_method='iid')."
        )
    est, se, lo, hi, n_eff = _core(
        measure, x, None if weights is None else np.asarray(weights, dtype=float), param,
        se_method="iid", confidence=confidence, nan_policy=nan_policy, where="samples",
    )
    flags = (INSUFFICIENT_TAIL,) if measure in ("quantile", "superquantile") and np.isnan(se) \
        and np.isfinite(est) else ()
    extra = {} if name is None else {"variable": str(name)}
    return RiskEstimate(measure, est, se, lo, hi, n_eff, confidence, "iid", {**params, **extra}, flags)


def quantile(
    samples: ArrayOrDA,
    alpha: float,
    *,
    weights: Any = None,
    sample_dims: str | Sequence[str] | None = None,
    se_method: str = "auto",
    confidence: float = 0.95,
    nan_policy: str = "raise",
    name: str | None = None,
) -> RiskEstimate | xr.Dataset:
    """Quantile (value-at-risk) ``VaR_alpha = inf{q : P(X <= q) >= alpha}``.

    Parameters
    ----------
    samples : array_like (1-D) or xarray.DataArray
        Loss draws.
    alpha : float
        Probability level in (0, 1).
    weights : array_like or DataArray, optional
        Non-negative sample weights (self-normalised), e.g. importance weights.
    sample_dims : str or sequence of str, optional
        Dims of a DataArray to reduce over (default ``("chain", "draw")`` when present).
    se_method : {"auto", "iid", "ess"}
        How the Monte Carlo standard error is computed (see module docstring).
    confidence : float
        Level of the confidence interval.
    nan_policy : {"raise", "omit"}
        What to do with NaN samples.
    name : str, optional
        Name of the quantity, stored in the result's ``attrs["variable"]`` (DataArray input).
        Default: the DataArray's name - which xarray keeps through reductions and arithmetic,
        so ``superquantile(zeta.max("obs"), 0.9)`` would be labelled ``zeta``; name derived
        quantities, e.g. ``name="peak_zeta"``.

    Returns
    -------
    RiskEstimate or xarray.Dataset

    Notes
    -----
    The standard error uses the influence function ``(alpha - 1{x <= q}) / f(q)`` with the
    density estimated by the Siddiqui--Hall--Sheather difference quotient.
    """
    a = _array.check_alpha(alpha, "quantile")
    return _dispatch("quantile", samples, a, weights=weights, sample_dims=sample_dims,
                     se_method=se_method, confidence=confidence, nan_policy=nan_policy, name=name,
                     params={"alpha": a})


def superquantile(
    samples: ArrayOrDA,
    alpha: float,
    *,
    weights: Any = None,
    sample_dims: str | Sequence[str] | None = None,
    se_method: str = "auto",
    confidence: float = 0.95,
    nan_policy: str = "raise",
    name: str | None = None,
) -> RiskEstimate | xr.Dataset:
    """Superquantile (CVaR) by the Rockafellar--Uryasev formula.

    ``CVaR_alpha(X) = min_c { c + E[(X - c)+] / (1 - alpha) }``, attained at ``c = VaR_alpha``;
    with equal weights and integer ``n (1 - alpha)`` it is the mean of the worst
    ``n (1 - alpha)`` draws. Parameters as in :func:`quantile`.

    Notes
    -----
    Influence function: ``q + (x - q)+ / (1 - alpha) - CVaR`` (no density estimate needed).
    With fewer than :data:`MIN_TAIL` (10) effective draws beyond the quantile
    (``n (1 - alpha) < 10``) the standard error and interval are NaN and the estimate carries
    the flag ``"insufficient tail draws"`` (plus a :class:`TailSampleWarning`).
    """
    a = _array.check_alpha(alpha, "superquantile")
    return _dispatch("superquantile", samples, a, weights=weights, sample_dims=sample_dims,
                     se_method=se_method, confidence=confidence, nan_policy=nan_policy, name=name,
                     params={"alpha": a})


def buffered_failure_probability(
    samples: ArrayOrDA,
    threshold: float = 0.0,
    *,
    weights: Any = None,
    sample_dims: str | Sequence[str] | None = None,
    se_method: str = "auto",
    confidence: float = 0.95,
    nan_policy: str = "raise",
    name: str | None = None,
) -> RiskEstimate | xr.Dataset:
    """Buffered probability of failure / exceedance ``bPOE(threshold)`` (Rockafellar & Royset).

    ``bPOE(z) = min_{a >= 0} E[(a (X - z) + 1)+]``: the tail probability ``1 - alpha`` at which
    ``CVaR_alpha(X) = z`` (1 when ``z <= E X``, 0 when ``z >= sup X``). It bounds
    ``P(X > z)`` from above and is quasi-convex in decisions. Solved exactly on the sorted
    sample; the standard error uses the envelope-theorem influence function
    ``(x - t*)+ / (z - t*) - bPOE`` at the minimiser ``t* = VaR_{1-bPOE}``.
    Other parameters as in :func:`quantile`.
    """
    z = _check_threshold(threshold, "buffered_failure_probability")
    return _dispatch("buffered_failure_probability", samples, z, weights=weights,
                     sample_dims=sample_dims, se_method=se_method, confidence=confidence,
                     nan_policy=nan_policy, name=name, params={"threshold": z})


def failure_probability(
    samples: ArrayOrDA,
    threshold: float = 0.0,
    *,
    weights: Any = None,
    sample_dims: str | Sequence[str] | None = None,
    se_method: str = "auto",
    confidence: float = 0.95,
    nan_policy: str = "raise",
    name: str | None = None,
) -> RiskEstimate | xr.Dataset:
    """Probability of failure ``P(X > threshold)``, with a Wilson score interval.

    For rare events use :func:`vvuq_twin.risk.subset_simulation` or
    :func:`vvuq_twin.risk.importance_sampling` instead. Other parameters as in :func:`quantile`.
    """
    z = _check_threshold(threshold, "failure_probability")
    return _dispatch("failure_probability", samples, z, weights=weights, sample_dims=sample_dims,
                     se_method=se_method, confidence=confidence, nan_policy=nan_policy, name=name,
                     params={"threshold": z})


def expected_loss(
    samples: ArrayOrDA,
    *,
    weights: Any = None,
    sample_dims: str | Sequence[str] | None = None,
    se_method: str = "auto",
    confidence: float = 0.95,
    nan_policy: str = "raise",
    name: str | None = None,
) -> RiskEstimate | xr.Dataset:
    """Expected loss ``E[X]`` with its Monte Carlo standard error."""
    return _dispatch("expected_loss", samples, None, weights=weights, sample_dims=sample_dims,
                     se_method=se_method, confidence=confidence, nan_policy=nan_policy, name=name,
                     params={})


def entropic_risk(
    samples: ArrayOrDA,
    theta: float = 1.0,
    *,
    weights: Any = None,
    sample_dims: str | Sequence[str] | None = None,
    se_method: str = "auto",
    confidence: float = 0.95,
    nan_policy: str = "raise",
    name: str | None = None,
) -> RiskEstimate | xr.Dataset:
    """Entropic risk ``log E[exp(theta X)] / theta`` (risk-averse for ``theta > 0``).

    For ``X ~ N(mu, sigma^2)`` it equals ``mu + theta sigma^2 / 2``. Computed with log-sum-exp;
    influence function ``(exp(theta (x - rho)) - 1) / theta``.
    """
    try:
        th = float(theta)
    except (TypeError, ValueError):
        raise RiskInputError(f"The 'theta' parameter of entropic_risk must be a non-zero float; got {theta!r}.") from None
    if th == 0.0 or not math.isfinite(th):
        raise RiskInputError(
            f"The 'theta' parameter of entropic_risk must be a finite non-zero float; got {theta!r} "
            "(theta -> 0 is the expected loss: use expected_loss)."
        )
    return _dispatch("entropic_risk", samples, th, weights=weights, sample_dims=sample_dims,
                     se_method=se_method, confidence=confidence, nan_policy=nan_policy, name=name,
                     params={"theta": th})


def _check_threshold(threshold: float, func: str) -> float:
    try:
        z = float(threshold)
    except (TypeError, ValueError):
        raise RiskInputError(f"The 'threshold' parameter of {func} must be a finite float; got {threshold!r}.") from None
    if not math.isfinite(z):
        raise RiskInputError(f"The 'threshold' parameter of {func} must be finite; got {threshold!r}.")
    return z


value_at_risk = quantile
conditional_value_at_risk = superquantile
