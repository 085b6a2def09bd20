"""Observed order of accuracy from a refinement sequence (code verification).

The discretisation error of a consistent scheme of order ``p`` behaves like ``e(h) = C h**p`` in
the asymptotic range, so ``log e`` is linear in ``log h`` with slope ``p``. The observed order is
the least-squares slope of that line; its residual says how well the data follow a single power
law (a large residual means some grids are outside the asymptotic range or the errors are
polluted by round-off or iteration error). Comparing the observed order with the scheme's
theoretical order is the acceptance test of code verification (Roache 1998; Oberkampf & Roy
2010, ch. 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import xarray as xr
from scipy import stats

from ._errors import RefinementError

__all__ = ["OrderResult", "observed_order", "check_refinement"]


def check_refinement(h: Sequence[float] | np.ndarray, *, name: str = "h", min_levels: int = 2) -> np.ndarray:
    """Validate a sequence of grid spacings and return it as a float array.

    The sequence must hold at least ``min_levels`` finite, positive, distinct values in strictly
    monotone order (all increasing or all decreasing).

    Raises
    ------
    RefinementError
        Naming what is wrong and how to fix it.
    """
    arr = np.asarray(h, dtype=float)
    if arr.ndim != 1:
        raise RefinementError(f"`{name}` must be a 1-D sequence of grid spacings, got shape {arr.shape}.")
    if arr.size < min_levels:
        raise RefinementError(
            f"`{name}` has {arr.size} refinement level(s); at least {min_levels} are needed. "
            "Run the problem on more grids (e.g. halve the spacing each time)."
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise RefinementError(
            f"`{name}` must hold finite, positive grid spacings, got {arr.tolist()}."
        )
    d = np.diff(arr)
    if not (np.all(d < 0) or np.all(d > 0)):
        raise RefinementError(
            f"The refinement sequence `{name}`={arr.tolist()} is not strictly monotone. Order the "
            "grids from coarsest to finest (or finest to coarsest) with no repeated spacing, and "
            "reorder the matching results the same way."
        )
    return arr


@dataclass(frozen=True)
class OrderResult:
    """Observed order of accuracy from a least-squares fit of ``log e = log C + p log h``.

    Attributes
    ----------
    order : float
        Observed order ``p`` (slope of the fit).
    order_stderr : float
        Standard error of the slope (NaN with only two levels).
    constant : float
        Error constant ``C``.
    residual : float
        Root-mean-square residual of the fit in natural-log units (0 for an exact power law).
    local_orders : ndarray
        Orders between successive levels, ``log(e_i/e_{i+1}) / log(h_i/h_{i+1})``.
    theoretical_order : float or None
        The scheme's formal order, if given.
    tol : float
        Allowed ``|order - theoretical_order|``.
    passed : bool or None
        ``|order - theoretical_order| <= tol``; None when no theoretical order was given.
    h, errors : ndarray
        The refinement sequence as given.
    """

    order: float
    order_stderr: float
    constant: float
    residual: float
    local_orders: np.ndarray
    theoretical_order: float | None
    tol: float
    passed: bool | None
    h: np.ndarray
    errors: np.ndarray

    def to_dataset(self) -> xr.Dataset:
        """Return the result as an :class:`xarray.Dataset` (dims ``level`` and ``pair``)."""
        n = self.h.size
        ds = xr.Dataset(
            {
                "h": ("level", self.h),
                "error": ("level", self.errors),
                "local_order": ("pair", self.local_orders),
                "order": self.order,
                "order_stderr": self.order_stderr,
                "constant": self.constant,
                "residual": self.residual,
            },
            coords={"level": np.arange(n), "pair": np.arange(n - 1)},
            attrs={
                "tol": self.tol,
                "theoretical_order": np.nan if self.theoretical_order is None else self.theoretical_order,
                "passed": -1 if self.passed is None else int(self.passed),
                "description": "observed order of accuracy, least-squares fit in log-log",
            },
        )
        return ds

    def __str__(self) -> str:
        th = "" if self.theoretical_order is None else (
            f" vs theoretical {self.theoretical_order:g} (tol {self.tol:g}): "
            f"{'PASS' if self.passed else 'FAIL'}"
        )
        return (
            f"observed order {self.order:.3f} ± {self.order_stderr:.3f} "
            f"(fit residual {self.residual:.2e}){th}"
        )


def observed_order(
    h: Sequence[float] | np.ndarray,
    errors: Sequence[float] | np.ndarray,
    *,
    theoretical_order: float | None = None,
    tol: float = 0.1,
) -> OrderResult:
    """Estimate the observed order of accuracy from a refinement sequence.

    Parameters
    ----------
    h : sequence of float
        Grid spacings (or any quantity proportional to them), strictly monotone.
    errors : sequence of float
        Norm of the discretisation error on each grid (e.g. max-norm of the difference to a
        manufactured solution), same length and order as ``h``; positive and finite.
    theoretical_order : float, optional
        The scheme's formal order of accuracy. When given, ``passed`` reports whether the
        observed order lies within ``tol`` of it.
    tol : float
        Acceptance tolerance on the order.

    Returns
    -------
    OrderResult

    Raises
    ------
    RefinementError
        If ``h`` is not strictly monotone, has fewer than two levels, or ``errors`` do not
        match it or are not positive and finite.

    Examples
    --------
    >>> res = observed_order([0.1, 0.05, 0.025], [1e-2, 2.5e-3, 6.25e-4], theoretical_order=2)
    >>> round(res.order, 6), res.passed
    (2.0, True)
    """
    hh = check_refinement(h, name="h", min_levels=2)
    e = np.asarray(errors, dtype=float)
    if e.shape != hh.shape:
        raise RefinementError(
            f"`errors` must have one value per grid: got shape {e.shape} for {hh.size} grids."
        )
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise RefinementError(
            f"`errors` must be finite and positive to fit in log-log, got {e.tolist()}. A zero error "
            "means the manufactured solution is reproduced exactly (choose one the scheme cannot "
            "represent, e.g. with sin/exp terms); NaN/inf means a solver failed on that grid."
        )
    if not (np.isfinite(tol) and tol > 0):
        raise RefinementError(f"`tol` must be a positive number, got {tol}.")
    lh, le = np.log(hh), np.log(e)
    fit = stats.linregress(lh, le)
    resid = le - (fit.intercept + fit.slope * lh)
    rms = float(np.sqrt(np.mean(resid**2)))
    stderr = float(fit.stderr) if hh.size > 2 else float("nan")
    local = np.diff(le) / np.diff(lh)
    passed = None
    if theoretical_order is not None:
        passed = bool(abs(fit.slope - theoretical_order) <= tol)
    return OrderResult(
        order=float(fit.slope),
        order_stderr=stderr,
        constant=float(np.exp(fit.intercept)),
        residual=rms,
        local_orders=local,
        theoretical_order=None if theoretical_order is None else float(theoretical_order),
        tol=float(tol),
        passed=passed,
        h=hh,
        errors=e,
    )
