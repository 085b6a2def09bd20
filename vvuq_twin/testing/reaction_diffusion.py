"""A small 1-D reaction–diffusion solver: the known-answer problem of code verification.

Solves ``u_t = D u_xx - k u + s(x, t)`` on ``0 <= x <= length``, ``0 <= t <= t_end`` with
Dirichlet boundary values and an initial condition, by second-order central differences in
space and a theta-scheme in time:

- ``scheme="crank-nicolson"`` (theta = 1/2): second order in space and time;
- ``scheme="backward-euler"`` (theta = 1): first order in time, a *deliberately* first-order
  variant: with ``dt`` refined in proportion to ``h`` the global error decays like ``h``.

Used with :func:`vvuq_twin.verification.manufacture` and
:func:`vvuq_twin.verification.observed_order` by tests, the validation suite and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import sympy as sp
from scipy.linalg import cho_factor, cho_solve

__all__ = ["ReactionDiffusion1D", "THEORETICAL_ORDER"]

Scheme = Literal["crank-nicolson", "backward-euler"]

#: Formal order of accuracy in ``h`` of each scheme when ``dt`` is proportional to ``h``.
THEORETICAL_ORDER: dict[str, int] = {"crank-nicolson": 2, "backward-euler": 1}
_THETA = {"crank-nicolson": 0.5, "backward-euler": 1.0}


@dataclass(frozen=True)
class ReactionDiffusion1D:
    """Linear reaction–diffusion problem ``u_t = D u_xx - k u + s``.

    Parameters
    ----------
    diffusivity : float
        ``D > 0``.
    reaction : float
        ``k >= 0`` (first-order decay rate).
    length : float
        Domain length.
    """

    diffusivity: float = 0.5
    reaction: float = 1.0
    length: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.diffusivity) and self.diffusivity > 0):
            raise ValueError(f"`diffusivity` must be positive, got {self.diffusivity}.")
        if not (np.isfinite(self.reaction) and self.reaction >= 0):
            raise ValueError(f"`reaction` must be >= 0, got {self.reaction}.")
        if not (np.isfinite(self.length) and self.length > 0):
            raise ValueError(f"`length` must be positive, got {self.length}.")

    def operator(self, u: sp.Expr, x: sp.Symbol, t: sp.Symbol) -> sp.Expr:
        """PDE residual operator ``L(u) = u_t - D u_xx + k u`` (so the PDE reads ``L(u) = s``)."""
        return sp.diff(u, t) - self.diffusivity * sp.diff(u, x, 2) + self.reaction * u

    def solve(
        self,
        n_cells: int,
        t_end: float,
        *,
        source: Callable[[np.ndarray, np.ndarray], np.ndarray],
        initial: Callable[[np.ndarray], np.ndarray],
        left: Callable[[float], float],
        right: Callable[[float], float],
        scheme: Scheme = "crank-nicolson",
        courant: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """March the solution to ``t_end``.

        Parameters
        ----------
        n_cells : int
            Number of cells (``n_cells + 1`` nodes); ``h = length / n_cells``.
        t_end : float
            Final time.
        source : callable
            ``source(x, t)``, vectorised over ``x``.
        initial : callable
            ``initial(x)``.
        left, right : callable
            Dirichlet values ``u(0, t)`` and ``u(length, t)``.
        scheme : {"crank-nicolson", "backward-euler"}
            Time integrator (see module docstring).
        courant : float
            ``dt ≈ courant * h``; the number of steps is ``round(t_end / (courant * h))`` so that
            ``dt`` is refined together with ``h``.

        Returns
        -------
        x : ndarray, shape (n_cells + 1,)
        u : ndarray, shape (n_cells + 1,)
            Numerical solution at ``t_end``.
        """
        if scheme not in _THETA:
            raise ValueError(f"`scheme` must be one of {sorted(_THETA)}, got {scheme!r}.")
        if int(n_cells) != n_cells or n_cells < 2:
            raise ValueError(f"`n_cells` must be an integer >= 2, got {n_cells}.")
        if not (np.isfinite(t_end) and t_end > 0):
            raise ValueError(f"`t_end` must be positive, got {t_end}.")
        if not (np.isfinite(courant) and courant > 0):
            raise ValueError(f"`courant` must be positive, got {courant}.")
        n = int(n_cells)
        theta = _THETA[scheme]
        h = self.length / n
        n_steps = max(1, int(round(t_end / (courant * h))))
        dt = t_end / n_steps
        x = np.linspace(0.0, self.length, n + 1)
        xi = x[1:-1]
        m = n - 1
        D, k = self.diffusivity, self.reaction
        # A = D * Lap_h - k I on interior nodes (Dirichlet values enter through `bc`).
        main = np.full(m, -2.0 * D / h**2 - k)
        off = np.full(m - 1, D / h**2)
        A = np.diag(main) + np.diag(off, 1) + np.diag(off, -1)
        lhs = np.eye(m) - theta * dt * A  # symmetric positive definite
        rhs_mat = np.eye(m) + (1.0 - theta) * dt * A
        factor = cho_factor(lhs)

        def bc(t: float) -> np.ndarray:
            b = np.zeros(m)
            b[0] += D / h**2 * left(t)
            b[-1] += D / h**2 * right(t)
            return b

        u = np.asarray(initial(x), dtype=float).copy()
        ui = u[1:-1]
        t = 0.0
        for _ in range(n_steps):
            t1 = t + dt
            forcing = theta * (source(xi, t1) + bc(t1)) + (1.0 - theta) * (source(xi, t) + bc(t))
            ui = cho_solve(factor, rhs_mat @ ui + dt * forcing)
            t = t1
        out = np.empty(n + 1)
        out[0], out[-1], out[1:-1] = left(t_end), right(t_end), ui
        return x, out

    def mms_errors(
        self,
        exact: Callable[[np.ndarray, np.ndarray], np.ndarray],
        source: Callable[[np.ndarray, np.ndarray], np.ndarray],
        n_cells: Sequence[int],
        *,
        t_end: float = 1.0,
        scheme: Scheme = "crank-nicolson",
        courant: float = 1.0,
        norm: Literal["max", "l2"] = "max",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Errors against a manufactured solution on a refinement sequence.

        Boundary and initial data are taken from ``exact``; ``source`` is its manufactured source.

        Returns
        -------
        h : ndarray
            Grid spacings.
        errors : ndarray
            Max-norm (or discrete L2-norm) of ``u_h(t_end) - exact(x, t_end)``.
        """
        if norm not in ("max", "l2"):
            raise ValueError(f"`norm` must be 'max' or 'l2', got {norm!r}.")
        hs, errs = [], []
        for n in n_cells:
            x, u = self.solve(
                n,
                t_end,
                source=source,
                initial=lambda xx: exact(xx, np.zeros_like(xx)),
                left=lambda tt: float(exact(np.array(0.0), np.array(tt))),
                right=lambda tt: float(exact(np.array(self.length), np.array(tt))),
                scheme=scheme,
                courant=courant,
            )
            e = u - exact(x, np.full_like(x, t_end))
            h = self.length / n
            hs.append(h)
            errs.append(np.max(np.abs(e)) if norm == "max" else np.sqrt(h * np.sum(e**2)))
        return np.asarray(hs), np.asarray(errs)
