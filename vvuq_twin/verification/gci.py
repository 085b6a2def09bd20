"""Solution verification: Richardson extrapolation and the Grid Convergence Index.

Implements the three-grid procedure of Celik, Ghia, Roache, Freitas, Coleman & Raad (2008),
"Procedure for Estimation and Reporting of Uncertainty Due to Discretization in CFD
Applications", J. Fluids Eng. 130(7):078001 (the journal's editorial policy), built on Roache's
GCI (Roache 1994, J. Fluids Eng. 116:405-413; Roache 1998):

1. representative grid size ``h = (V / N) ** (1/dim)`` (Eq. 1);
2. refinement ratios ``r21 = h2/h1``, ``r32 = h3/h2`` (grid 1 finest);
3. apparent order ``p`` from the fixed-point iteration (Eqs. 3a-3c)::

       p = |ln|e32/e21| + q(p)| / ln r21,   q(p) = ln((r21**p - s) / (r32**p - s)),
       s = sign(e32/e21),   e21 = phi2 - phi1,  e32 = phi3 - phi2

   (``s = -1`` flags oscillatory convergence);
4. extrapolated value ``phi_ext21 = (r21**p phi1 - phi2) / (r21**p - 1)`` (Eq. 4);
5. approximate relative error ``e_a21 = |(phi1 - phi2)/phi1|``, extrapolated relative error
   ``e_ext21 = |(phi_ext21 - phi1)/phi_ext21|`` and the fine-grid convergence index
   ``GCI_fine21 = Fs e_a21 / (r21**p - 1)`` with safety factor ``Fs = 1.25`` (Eqs. 5-6).

Numerical uncertainty for a validation budget (ASME V&V 20-2009, Sec. 5): the GCI is an
expanded uncertainty; this module reports the *standard* numerical uncertainty as
``u_num = GCI_fine21 * |phi1| / coverage_factor`` with ``coverage_factor = Fs`` by default
(documented choice; pass another coverage factor if your standard prescribes one). ``u_num``
is in the units of ``phi``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import xarray as xr
from scipy import optimize

from ._errors import ConvergenceWarning, RefinementError
from .order import check_refinement

__all__ = ["GCIResult", "gci", "representative_grid_size", "richardson_extrapolate"]

Convergence = Literal["monotonic", "oscillatory", "divergent", "oscillatory-divergent"]


def representative_grid_size(
    n_cells: Sequence[float] | np.ndarray, dim: int, *, volume: float = 1.0
) -> np.ndarray:
    """Representative grid size ``h = (volume / N) ** (1/dim)`` (Celik et al. 2008, Eq. 1).

    Parameters
    ----------
    n_cells : sequence of int
        Number of cells of each grid.
    dim : {1, 2, 3}
        Spatial dimension.
    volume : float
        Domain length, area or volume (cancels in refinement ratios).
    """
    if dim not in (1, 2, 3):
        raise RefinementError(f"`dim` must be 1, 2 or 3, got {dim!r}.")
    n = np.asarray(n_cells, dtype=float)
    if n.ndim != 1 or np.any(~np.isfinite(n)) or np.any(n <= 0):
        raise RefinementError(f"`n_cells` must be a 1-D sequence of positive cell counts, got {n_cells!r}.")
    if not (np.isfinite(volume) and volume > 0):
        raise RefinementError(f"`volume` must be positive, got {volume}.")
    return (volume / n) ** (1.0 / dim)


def richardson_extrapolate(phi_fine: float, phi_coarse: float, r: float, p: float) -> float:
    """Richardson extrapolation ``(r**p phi_fine - phi_coarse) / (r**p - 1)``.

    Parameters
    ----------
    phi_fine, phi_coarse : float
        Solutions on the finer and the coarser grid.
    r : float
        Refinement ratio ``h_coarse / h_fine > 1``.
    p : float
        Order of accuracy (> 0).
    """
    if not (r > 1 and p > 0):
        raise RefinementError(
            f"Richardson extrapolation needs a refinement ratio r > 1 and an order p > 0, got r={r}, p={p}."
        )
    rp = r**p
    return float((rp * phi_fine - phi_coarse) / (rp - 1.0))


@dataclass(frozen=True)
class GCIResult:
    """Three-grid solution-verification result (Celik et al. 2008). Grid 1 is the finest.

    Attributes
    ----------
    phi, h : ndarray, shape (3,)
        Solutions and representative grid sizes, finest first.
    r21, r32 : float
        Refinement ratios.
    e21, e32 : float
        ``phi2 - phi1`` and ``phi3 - phi2``.
    s : int
        ``sign(e32 / e21)``; -1 means oscillatory convergence.
    convergence : str
        ``"monotonic"``, ``"oscillatory"``, ``"divergent"`` (differences grow under refinement)
        or ``"oscillatory-divergent"``.
    p : float
        Apparent order of accuracy.
    iterations : int
        Fixed-point iterations used (0 when the bracketing root finder was needed).
    phi_ext21, phi_ext32 : float
        Richardson-extrapolated values from grids (1, 2) and (2, 3).
    e_a21, e_a32 : float
        Approximate relative errors.
    e_ext21, e_ext32 : float
        Extrapolated relative errors.
    gci_fine21, gci_coarse32 : float
        Grid convergence indices (relative, e.g. 0.022 = 2.2 %).
    asymptotic_ratio : float
        ``gci_coarse32 / (r21**p * gci_fine21)``; near 1 in the asymptotic range.
    safety_factor : float
        ``Fs``.
    coverage_factor : float
        Divisor turning the GCI into a standard uncertainty.
    u_num : float
        Standard numerical uncertainty of ``phi1``: ``gci_fine21 * |phi1| / coverage_factor``
        (units of ``phi``).
    """

    phi: np.ndarray
    h: np.ndarray
    r21: float
    r32: float
    e21: float
    e32: float
    s: int
    convergence: str
    p: float
    iterations: int
    phi_ext21: float
    phi_ext32: float
    e_a21: float
    e_a32: float
    e_ext21: float
    e_ext32: float
    gci_fine21: float
    gci_coarse32: float
    asymptotic_ratio: float
    safety_factor: float
    coverage_factor: float
    u_num: float

    def to_dataset(self) -> xr.Dataset:
        """Return the result as an :class:`xarray.Dataset` (dim ``grid``: fine, medium, coarse)."""
        scalars = {
            k: getattr(self, k)
            for k in (
                "r21", "r32", "e21", "e32", "s", "p", "iterations", "phi_ext21", "phi_ext32",
                "e_a21", "e_a32", "e_ext21", "e_ext32", "gci_fine21", "gci_coarse32",
                "asymptotic_ratio", "safety_factor", "coverage_factor", "u_num",
            )
        }
        ds = xr.Dataset(
            {"phi": ("grid", self.phi), "h": ("grid", self.h), **scalars},
            coords={"grid": ["fine", "medium", "coarse"]},
            attrs={
                "convergence": self.convergence,
                "method": "Celik et al. (2008) J. Fluids Eng. 130:078001, three-grid GCI",
            },
        )
        ds["u_num"].attrs["description"] = "standard numerical uncertainty of phi_fine, GCI*|phi1|/coverage_factor"
        return ds

    def __str__(self) -> str:
        return (
            f"GCI ({self.convergence}): p={self.p:.3f}, phi_ext={self.phi_ext21:.6g}, "
            f"e_a={100 * self.e_a21:.2f}%, e_ext={100 * self.e_ext21:.2f}%, "
            f"GCI_fine={100 * self.gci_fine21:.2f}%, u_num={self.u_num:.3g}"
        )


def _apparent_order(
    r21: float, r32: float, e21: float, e32: float, s: float, *, tol: float, max_iter: int
) -> tuple[float, int]:
    ln_ratio = math.log(abs(e32 / e21))

    def g(p: float) -> float:
        a, b = r21**p - s, r32**p - s
        return abs(ln_ratio + math.log(a / b)) / math.log(r21)

    p = abs(ln_ratio) / math.log(r21)  # constant-ratio value as the starting point
    p = max(p, 1e-3)
    for it in range(1, max_iter + 1):
        try:
            p_new = g(p)
        except (ValueError, ZeroDivisionError, OverflowError):
            break
        if abs(p_new - p) <= tol * max(1.0, abs(p)):
            return p_new, it
        p = p_new
    # The fixed point did not converge (can happen for oscillatory data): solve g(p) = p by
    # bracketing on a wide interval instead.
    f = lambda q: g(q) - q  # noqa: E731
    grid = np.concatenate([np.linspace(1e-3, 1.0, 50), np.linspace(1.0, 30.0, 300)[1:]])
    vals = []
    for q in grid:
        try:
            vals.append(f(q))
        except (ValueError, ZeroDivisionError, OverflowError):
            vals.append(np.nan)
    vals = np.asarray(vals)
    for i in range(len(grid) - 1):
        if np.isfinite(vals[i]) and np.isfinite(vals[i + 1]) and vals[i] * vals[i + 1] <= 0:
            return float(optimize.brentq(f, grid[i], grid[i + 1], xtol=1e-14)), 0
    raise RefinementError(
        "The apparent order could not be determined: the fixed-point iteration of Celik et al. "
        f"(2008) did not converge in {max_iter} iterations and no root exists in (0, 30] "
        f"(r21={r21:.4g}, r32={r32:.4g}, e21={e21:.4g}, e32={e32:.4g}). The grids are probably "
        "outside the asymptotic range; refine further."
    )


def gci(
    phi: Sequence[float] | np.ndarray,
    h: Sequence[float] | np.ndarray | None = None,
    *,
    n_cells: Sequence[float] | np.ndarray | None = None,
    dim: int | None = None,
    safety_factor: float = 1.25,
    coverage_factor: float | None = None,
    tol: float = 1e-12,
    max_iter: int = 1000,
) -> GCIResult:
    """Grid Convergence Index and Richardson extrapolation from three grids.

    Parameters
    ----------
    phi : sequence of 3 floats
        The quantity of interest on the three grids, in the same order as ``h``/``n_cells``.
    h : sequence of 3 floats, optional
        Representative grid sizes, strictly monotone (finest first or coarsest first).
    n_cells, dim : optional
        Instead of ``h``: cell counts and spatial dimension; ``h = (1/N)**(1/dim)``.
    safety_factor : float
        ``Fs`` (1.25 for three-grid studies, Roache 1998).
    coverage_factor : float, optional
        Divisor for ``u_num``; default ``safety_factor``.
    tol, max_iter :
        Fixed-point iteration controls for the apparent order.

    Returns
    -------
    GCIResult

    Raises
    ------
    RefinementError
        Fewer or more than three grids, grid sizes not strictly monotone, non-finite values,
        or identical solutions on two grids (the order is undefined).

    Warns
    -----
    ConvergenceWarning
        For oscillatory or divergent convergence: Richardson extrapolation assumes monotone
        asymptotic convergence, so the GCI is then only indicative.

    Examples
    --------
    The dimensionless reattachment length of Celik et al. (2008), Table 1:

    >>> res = gci([6.063, 5.972, 5.863], n_cells=[18000, 8000, 4500], dim=2)
    >>> round(res.p, 2), round(res.phi_ext21, 4), round(100 * res.gci_fine21, 1)
    (1.53, 6.1685, 2.2)
    """
    if (h is None) == (n_cells is None):
        raise RefinementError(
            "Give the grids either as representative sizes `h` or as `n_cells` with `dim`, not both "
            "or neither."
        )
    if n_cells is not None:
        if dim is None:
            raise RefinementError("`n_cells` needs the spatial dimension `dim` (1, 2 or 3).")
        hh = representative_grid_size(n_cells, dim)
        label = "n_cells"
    else:
        hh = np.asarray(h, dtype=float)
        label = "h"
    ph = np.asarray(phi, dtype=float)
    if ph.ndim != 1 or ph.size < 3 or hh.ndim != 1 or hh.size < 3:
        raise RefinementError(
            f"The GCI needs solutions on three grids; got {ph.size} value(s) of `phi` and "
            f"{hh.size} of `{label}`. Run a third, coarser or finer grid (refinement ratio > 1.3, "
            "Celik et al. 2008)."
        )
    if ph.size != 3 or hh.size != 3:
        raise RefinementError(
            f"The three-grid GCI takes exactly three grids; got {ph.size} values of `phi` and "
            f"{hh.size} of `{label}`. Pass the three finest grids (or use observed_order for a "
            "least-squares fit over many grids)."
        )
    hh = check_refinement(hh, name=label, min_levels=3)
    if not np.all(np.isfinite(ph)):
        raise RefinementError(f"`phi` must be finite on every grid, got {ph.tolist()}.")
    if not (np.isfinite(safety_factor) and safety_factor >= 1):
        raise RefinementError(f"`safety_factor` must be >= 1, got {safety_factor}.")
    cf = float(safety_factor if coverage_factor is None else coverage_factor)
    if not (np.isfinite(cf) and cf > 0):
        raise RefinementError(f"`coverage_factor` must be positive, got {coverage_factor}.")
    if hh[0] > hh[-1]:  # given coarsest first: reorder to finest first
        hh, ph = hh[::-1].copy(), ph[::-1].copy()
    h1, h2, h3 = hh
    p1, p2, p3 = ph
    r21, r32 = h2 / h1, h3 / h2
    e21, e32 = p2 - p1, p3 - p2
    if e21 == 0 or e32 == 0:
        raise RefinementError(
            f"The solutions on two grids are identical (e21={e21}, e32={e32}); the apparent order is "
            "undefined. The quantity is grid-independent to the printed digits: report more digits "
            "or use coarser grids."
        )
    if min(r21, r32) < 1.3:
        warnings.warn(
            f"Refinement ratios r21={r21:.3f}, r32={r32:.3f}: Celik et al. (2008) recommend r > 1.3 so "
            "that discretisation error dominates other errors.",
            ConvergenceWarning,
            stacklevel=2,
        )
    s = 1 if e32 / e21 > 0 else -1
    divergent = abs(e21) > abs(e32)
    if s > 0:
        convergence: str = "divergent" if divergent else "monotonic"
    else:
        convergence = "oscillatory-divergent" if divergent else "oscillatory"
    if convergence != "monotonic":
        warnings.warn(
            f"Grid convergence is {convergence} (e32/e21 = {e32 / e21:.4g}); Richardson extrapolation "
            "assumes monotone convergence in the asymptotic range, so the GCI is indicative only. "
            "Consider a larger safety factor (Fs = 3) or finer grids.",
            ConvergenceWarning,
            stacklevel=2,
        )
    p, iters = _apparent_order(r21, r32, e21, e32, s, tol=tol, max_iter=max_iter)
    phi_ext21 = richardson_extrapolate(p1, p2, r21, p)
    phi_ext32 = richardson_extrapolate(p2, p3, r32, p)
    e_a21 = abs((p1 - p2) / p1) if p1 != 0 else float("inf")
    e_a32 = abs((p2 - p3) / p2) if p2 != 0 else float("inf")
    e_ext21 = abs((phi_ext21 - p1) / phi_ext21) if phi_ext21 != 0 else float("inf")
    e_ext32 = abs((phi_ext32 - p2) / phi_ext32) if phi_ext32 != 0 else float("inf")
    gci21 = safety_factor * e_a21 / (r21**p - 1.0)
    gci32 = safety_factor * e_a32 / (r32**p - 1.0)
    asym = gci32 / (r21**p * gci21) if gci21 > 0 else float("nan")
    return GCIResult(
        phi=ph,
        h=hh,
        r21=float(r21),
        r32=float(r32),
        e21=float(e21),
        e32=float(e32),
        s=s,
        convergence=convergence,
        p=float(p),
        iterations=int(iters),
        phi_ext21=phi_ext21,
        phi_ext32=phi_ext32,
        e_a21=float(e_a21),
        e_a32=float(e_a32),
        e_ext21=float(e_ext21),
        e_ext32=float(e_ext32),
        gci_fine21=float(gci21),
        gci_coarse32=float(gci32),
        asymptotic_ratio=float(asym),
        safety_factor=float(safety_factor),
        coverage_factor=cf,
        u_num=float(gci21 * abs(p1) / cf),
    )
