"""Life of a new Virkler panel and the inspection decision under a chance constraint.

A new panel's life (cycles until the crack half-length reaches ``a_crit``) under the twin is::

    L = N(a_crit; log10_C, m, b) + 1e5 sigma eps,
    log10_C ~ N(log10_C_mu, log10_C_sigma),  m ~ N(m_mu, m_sigma),  eps ~ N(0, 1),

with ``N`` the Paris-law quadrature of :mod:`case_studies.airframe.model` including the
embedded log-rate discrepancy with coefficients ``b`` (shared by all panels), and the population
parameters ``theta`` (:data:`POPULATION_NAMES`) one posterior draw. Two estimators of the
failure probability ``P(L <= T)`` of an inspection interval ``T``:

- :func:`conditional_failure_probability`: for each posterior draw, ``P(L <= T | theta)`` by
  Gauss-Hermite quadrature over ``m`` and ``eps`` and the exact normal tail in ``log10_C``
  (``N`` is exactly ``10^-log10_C G(m, b)``, so the event is ``log10_C >= log10(G / R)``). The
  posterior mean over draws is the failure probability of a new panel; its reliability index
  ``beta(theta) = -Phi^-1(P(L <= T | theta))`` is the decision quantity of the sensitivity step.
- :func:`monte_carlo_failure_probability`: plain Monte Carlo over posterior draws and new
  panels, the independent check (binomial standard error) at the chosen interval.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import pytensor
import pytensor.tensor as pt
from numpy.polynomial.hermite_e import hermegauss
from scipy import special

from .data import VIRKLER_CONDITIONS
from .model import SHAPE_ORDERS, cycles_to_length, legendre_shape, quadrature_nodes, quadrature_rule

__all__ = [
    "DELTA_K_REF",
    "CYCLES_SCALE",
    "POPULATION_NAMES",
    "LifeModel",
    "conditional_failure_probability",
    "FailureProbability",
    "monte_carlo_failure_probability",
    "reliability_index",
    "mixture_quantile",
    "monotonicity_violations",
]

#: Reference stress-intensity range (MPa m^0.5): log10_C is the growth rate (m/cycle) there.
DELTA_K_REF = 12.0
#: Cycles are calibrated in units of 1e5.
CYCLES_SCALE = 1.0e5
#: Columns of a population-parameter draw ``theta``: population location and scale of
#: ``log10_C`` and ``m``, the three embedded-discrepancy coefficients, the cycle noise sd (1e5).
POPULATION_NAMES = ("log10_C_mu", "m_mu", "log10_C_sigma", "m_sigma", "rate_p2", "rate_p3", "rate_p4",
                    "noise_sd")

_W = float(VIRKLER_CONDITIONS["width_mm"])
_DS = float(VIRKLER_CONDITIONS["stress_range_mpa"])
_A0 = float(VIRKLER_CONDITIONS["initial_half_length_mm"])


class LifeModel:
    """Compiled ``N(a; log10_C, m, b, stress_range)`` in cycles for the Virkler panels (vectorised).

    One pytensor function, compiled on first use, of the twin's own
    :func:`~case_studies.airframe.model.cycles_to_length` with the embedded discrepancy.

    Parameters
    ----------
    n_steps : int
        Panels of the quadrature (as in the twin's simulator).
    log10_dk_range : (float, float)
        Range of ``log10 ΔK`` of the discrepancy's basis (the twin's, see
        :func:`case_studies.airframe.twin.log10_dk_range`).
    rule : {"simpson", "gauss4_log"}
        The composite rule (:func:`~case_studies.airframe.model.quadrature_rule`; the twin's is
        :data:`case_studies.airframe.twin.QUADRATURE`).
    """

    def __init__(self, n_steps: int, log10_dk_range: tuple[float, float], rule: str = "simpson") -> None:
        self.n_steps = int(n_steps)
        self.rule = str(rule)
        quadrature_rule(self.n_steps, self.rule)  # a bad rule or panel count fails here
        self.log10_dk_range = (float(log10_dk_range[0]), float(log10_dk_range[1]))
        self._f: Callable[..., np.ndarray] | None = None

    def _compile(self) -> Callable[..., np.ndarray]:
        a, lc, m, ds = pt.dvector("a"), pt.dvector("lc"), pt.dvector("m"), pt.dvector("ds")
        bs = [pt.dvector(f"b{k}") for k in SHAPE_ORDERS]
        out = cycles_to_length(a, _A0, lc, m, ds, _W, n_steps=self.n_steps, delta_k_ref=DELTA_K_REF,
                               shape=(bs, self.log10_dk_range), rule=self.rule)
        return pytensor.function([a, lc, m, ds, *bs], out)

    def __call__(self, a: Any, lc: Any, m: Any, b: Any = None, stress_range: Any = _DS) -> np.ndarray:
        """Cycles (not scaled) for broadcast arrays ``a`` (mm), ``lc``, ``m``, ``stress_range``;
        ``b``: discrepancy coefficients, shape ``(..., 3)`` broadcasting likewise (None: zero)."""
        if self._f is None:
            self._f = self._compile()
        b = np.zeros(len(SHAPE_ORDERS)) if b is None else np.asarray(b, dtype=float)
        if b.shape[-1] != len(SHAPE_ORDERS):
            raise ValueError(f"b must have a last axis of {len(SHAPE_ORDERS)} coefficients, got shape {b.shape}.")
        arrs = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (a, lc, m, stress_range)),
                                   *(b[..., k] for k in range(b.shape[-1])))
        shape = arrs[0].shape
        return self._f(*(np.ascontiguousarray(v).ravel() for v in arrs)).reshape(shape)

    def curves(self, lengths: Any, lc: Any, m: Any, b: Any, stress_range: float = _DS,
               chunk: int = 64) -> np.ndarray:
        """``N`` at every crack length for many (draw, unit) pairs, in numpy: shape (S, U, K).

        The same quadrature rule as :meth:`__call__` (same nodes and weights, the formula of
        :func:`~case_studies.airframe.model.cycles_to_length`), with everything that depends on
        the crack length alone (``ΔK`` at the nodes, the Legendre basis, the weights) computed
        once: ``N_k = 10^-lc sum_j c_kj 10^-(m log10(ΔK_kj/ΔK_ref) + b . P(ΔK_kj))``. Agrees with
        :meth:`__call__` to rounding (tested); used by the monotonicity check over all draws.

        Parameters
        ----------
        lengths : (K,) crack half-lengths (mm)
        lc, m : (S, U) per-draw, per-unit ``log10_C`` and ``m``
        b : (S, 3) discrepancy coefficients of each draw
        """
        a = np.asarray(lengths, float).ravel()
        lc, m, b = (np.asarray(v, float) for v in (lc, m, b))
        if lc.ndim != 2 or m.shape != lc.shape or b.shape != (lc.shape[0], len(SHAPE_ORDERS)):
            raise ValueError(f"curves needs lc and m of shape (S, U) and b of shape (S, {len(SHAPE_ORDERS)}); "
                             f"got {lc.shape}, {m.shape}, {b.shape}.")
        span, nodes, log_w = quadrature_nodes(a, _A0, self.n_steps, self.rule)  # nodes (K, J)
        dk = stress_range * np.sqrt(np.pi * nodes * 1e-3) * np.sqrt(1.0 / np.cos(np.pi * nodes / _W))
        ldk = np.log10(dk)
        basis = np.stack([legendre_shape(ldk, list(e), self.log10_dk_range).ravel()
                          for e in np.eye(len(SHAPE_ORDERS))])  # (3, K*J), orders SHAPE_ORDERS
        lr = (ldk - math.log10(DELTA_K_REF)).ravel()
        cw = span[:, None] * np.exp(log_w) * 1e-3  # (K, J): panel weight x span x mm -> m
        out = np.empty(lc.shape + (a.size,))
        ln10 = math.log(10.0)
        for i in range(0, lc.shape[0], int(chunk)):
            sl = slice(i, i + int(chunk))
            e = m[sl, :, None] * lr + (b[sl] @ basis)[:, None, :]  # (c, U, K*J) log10 of rate / C
            np.exp(-ln10 * e, out=e)
            out[sl] = np.einsum("cukj,kj->cuk", e.reshape(e.shape[:2] + cw.shape), cw)
            out[sl] *= np.exp(-ln10 * lc[sl])[:, :, None]
        return out

    def __getstate__(self) -> dict[str, Any]:  # the compiled function stays in this process
        return {"n_steps": self.n_steps, "rule": self.rule, "log10_dk_range": self.log10_dk_range, "_f": None}


def monotonicity_violations(curves: np.ndarray) -> int:
    """Number of curves (rows of ``N`` over increasing crack lengths) that fail to increase
    strictly somewhere: a crack never shrinks, so a physically possible twin has 0."""
    c = np.asarray(curves, float)
    return int(np.sum(np.any(~(np.diff(c, axis=-1) > 0), axis=-1)))


def monte_carlo_failure_probability(interval: float, theta: np.ndarray, life: LifeModel, a_crit: float, *,
                                    n: int, rng: Any, stress_range: float = _DS) -> tuple[float, float]:
    """``P(L <= interval)`` by plain Monte Carlo: a posterior draw, then a new panel and its
    cycle error, ``n`` times. Returns the estimate and its binomial standard error."""
    g = np.random.default_rng(rng)
    th = np.atleast_2d(np.asarray(theta, float))
    i = g.integers(th.shape[0], size=int(n))
    t = th[i]
    lc = t[:, 0] + t[:, 2] * g.standard_normal(n)
    m = t[:, 1] + t[:, 3] * g.standard_normal(n)
    L = life(a_crit, lc, m, t[:, 4:7], stress_range) + CYCLES_SCALE * t[:, 7] * g.standard_normal(n)
    p = float(np.mean(L <= interval))
    return p, float(math.sqrt(max(p * (1 - p), 1.0 / n) / n))


# --------------------------------------------------------------------- quadrature per draw
@lru_cache(maxsize=16)
def _gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and log-weights of Gauss-Hermite quadrature for the standard normal."""
    x, w = hermegauss(int(n))
    return x, np.log(w / math.sqrt(2.0 * math.pi))


class FailureProbability:
    """``P(L <= T | theta)`` for each population draw, for any interval ``T`` (see
    :func:`conditional_failure_probability`).

    The part that does not depend on ``T`` (``log10 G`` at the Gauss-Hermite nodes in ``m``, one
    :class:`LifeModel` evaluation per draw and node) is computed once at construction, so
    bisection over ``T`` (:func:`mixture_quantile`, the decision's interval search) costs one
    normal-tail evaluation per step instead of a quadrature of the Paris law.
    """

    def __init__(self, theta: np.ndarray, life: LifeModel, a_crit: float, *, stress_range: float = _DS,
                 n_m: int = 32, n_eps: int = 12) -> None:
        th = np.atleast_2d(np.asarray(theta, float))
        if th.shape[1] != len(POPULATION_NAMES):
            raise ValueError(f"theta must have {len(POPULATION_NAMES)} columns {POPULATION_NAMES}, "
                             f"got {th.shape[1]}.")
        self.lc_mu, m_mu, self.s_lc, s_m = (th[:, k] for k in range(4))
        self.sig = th[:, 7]
        xm, self.lwm = _gauss_hermite(n_m)
        self.xe, self.lwe = _gauss_hermite(n_eps)
        m_nodes = m_mu[:, None] + s_m[:, None] * xm[None, :]  # (S, n_m)
        self.log10_g = np.log10(life(a_crit, 0.0, m_nodes, th[:, None, 4:7], stress_range))  # N at log10_C = 0

    def __call__(self, interval: float, log: bool = False) -> np.ndarray:
        R = float(interval) - CYCLES_SCALE * (self.sig[:, None] * self.xe[None, :])  # (S, n_eps)
        with np.errstate(invalid="ignore", divide="ignore"):
            log10_r = np.where(R > 0, np.log10(np.where(R > 0, R, 1.0)), -np.inf)
        z = (self.log10_g[:, :, None] - log10_r[:, None, :] - self.lc_mu[:, None, None]) / self.s_lc[:, None, None]
        terms = special.log_ndtr(-z) + self.lwm[None, :, None] + self.lwe[None, None, :]  # log P(lc >= ...)
        top = terms.max(axis=(1, 2))
        safe = np.where(np.isfinite(top), top, 0.0)
        with np.errstate(divide="ignore"):  # every node has probability 0: log 0 = -inf
            out = safe + np.log(np.exp(terms - safe[:, None, None]).sum(axis=(1, 2)))
        out = np.where(np.isfinite(top), out, -np.inf)
        return out if log else np.exp(out)


def conditional_failure_probability(
    interval: float,
    theta: np.ndarray,
    life: LifeModel,
    a_crit: float,
    *,
    stress_range: float = _DS,
    n_m: int = 32,
    n_eps: int = 12,
    log: bool = False,
) -> np.ndarray:
    """``P(L <= interval | theta)`` for each population draw ``theta`` (rows, :data:`POPULATION_NAMES`).

    ``N(a; lc, m, b) = 10^-lc G(m, b)`` exactly (the rate is proportional to ``10^lc``), so for
    fixed ``m`` and ``eps`` the event ``L <= T`` is ``lc >= log10(G / R)`` with
    ``R = T - 1e5 sigma eps``: a normal tail. ``m`` and ``eps`` are integrated by
    Gauss-Hermite quadrature (``n_m`` and ``n_eps`` nodes). For many intervals on the same
    draws use :class:`FailureProbability` (same numbers, the quadrature of ``G`` done once).

    Returns
    -------
    ndarray, shape (n_draws,)
        Probabilities (their natural log with ``log=True``).
    """
    return FailureProbability(theta, life, a_crit, stress_range=stress_range, n_m=n_m, n_eps=n_eps)(interval, log)


def reliability_index(log_pf: np.ndarray) -> np.ndarray:
    """``beta = -Phi^-1(pf)`` from ``log pf`` (accurate far in the tail)."""
    return -special.ndtri_exp(np.minimum(np.asarray(log_pf, float), -1e-300))


def mixture_quantile(
    target: float,
    theta: np.ndarray | FailureProbability,
    life: LifeModel | None = None,
    a_crit: float | None = None,
    *,
    stress_range: float = _DS,
    bracket: tuple[float, float] = (1.0e3, 2.0e6),
    n_m: int = 32,
    n_eps: int = 12,
    rtol: float = 1e-5,
) -> float:
    """Interval ``T`` with ``mean_i P(L <= T | theta_i) = target`` (bisection in ``log T``).

    ``theta`` may be a :class:`FailureProbability` already built on the draws (then ``life``,
    ``a_crit``, ``stress_range``, ``n_m`` and ``n_eps`` are its own).
    """
    lo, hi = np.log(bracket[0]), np.log(bracket[1])
    if isinstance(theta, FailureProbability):
        pf = theta
    else:
        if life is None or a_crit is None:
            raise TypeError("mixture_quantile needs `life` and `a_crit` with a theta array.")
        pf = FailureProbability(theta, life, a_crit, stress_range=stress_range, n_m=n_m, n_eps=n_eps)

    def f(logt: float) -> float:
        return float(np.mean(pf(math.exp(logt))))

    if f(lo) > target or f(hi) < target:
        raise ValueError(f"The {target:g} quantile of the life lies outside {bracket} cycles.")
    while hi - lo > rtol:
        mid = 0.5 * (lo + hi)
        if f(mid) > target:
            hi = mid
        else:
            lo = mid
    return float(math.exp(0.5 * (lo + hi)))
