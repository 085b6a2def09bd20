"""The calibrated climate twin evaluated in closed form over posterior draws (NumPy).

The two-layer energy-balance model (EBM, efficacy 1) driven by annual piecewise-constant
forcing is a linear time-invariant system: the state at the end of year ``n`` is the forcing
convolved with the response to one year of unit forcing, ``S(d + 1) - S(d)`` with the
closed-form step response ``S`` of Geoffroy et al. (2013a). This module evaluates that exact
solution for many parameter draws at once:

- :func:`unit_step` / :func:`unit_step_heat`: surface temperature and total heat content
  ``H = C T + C_d T_d`` (W yr m⁻²) after a unit step forcing (NumPy or pytensor);
- :func:`ensemble`: ``T`` and ``H`` at the end of every year for every draw;
- :func:`anomaly_at`: ``T`` at given years against the model's own 1850-1900 mean;
- :func:`mean_imbalance`: the mean top-of-atmosphere imbalance (Earth energy imbalance, total
  heat uptake, ``N = kappa F - lambda T``) over a period, ``dH / dt`` averaged: the quantity an
  ocean-heat-content inventory measures;
- :func:`warming_functional`: 2100 warming as one dot product per draw (fast QoI for the
  sensitivity analysis);
- :class:`HSGPBasis`: the twin's Hilbert-space GP discrepancy (Matérn-3/2, PyMC's
  ``HSGP.prior_linearized``), an independent check of the declaration's discrepancy (tests);

Every function here is checked in the tests against an independent computation: the RK4
integrator of :mod:`case_studies.climate.model`, and :func:`vvuq_twin.predict` on the twin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy.signal import fftconvolve

from .model import modes

__all__ = [
    "EBM_PARAMS",
    "modes",
    "unit_step",
    "unit_step_heat",
    "impulse",
    "ensemble",
    "anomaly_at",
    "mean_imbalance",
    "warming_functional",
    "draws_dict",
    "HSGPBasis",
]

#: The EBM parameters of the twin (forcing scale ``kappa`` included).
EBM_PARAMS = ("lam", "gamma", "C", "C_d", "kappa")
#: Reference period of HadCRUT5's ``annual_1850to1900`` anomaly.
REFERENCE = (1850, 1900)


def unit_step(t: Any, lam: Any, gamma: Any, C: Any, C_d: Any, xp: Any = np) -> Any:
    """Surface temperature (K) at time ``t`` (years) after a unit step forcing (1 W m⁻²).

    The closed form of :func:`~case_studies.climate.model.step_response`, written for NumPy
    (``xp=np``, broadcasting over draws) or pytensor (``xp=pt``, differentiable).
    """
    tau_f, tau_s, _, _, a_f, a_s = modes(lam, gamma, C, C_d, xp)
    return (a_f * (1.0 - xp.exp(-t / tau_f)) + a_s * (1.0 - xp.exp(-t / tau_s))) / lam


def unit_step_heat(t: Any, lam: Any, gamma: Any, C: Any, C_d: Any, xp: Any = np) -> Any:
    """Heat content ``H = C T + C_d T_d`` (W yr m⁻²) at ``t`` after a unit step forcing.

    Its rate is the top-of-atmosphere imbalance ``dH/dt = F - lambda T`` (efficacy 1).
    """
    tau_f, tau_s, phi_f, phi_s, a_f, a_s = modes(lam, gamma, C, C_d, xp)
    ef = 1.0 - xp.exp(-t / tau_f)
    es = 1.0 - xp.exp(-t / tau_s)
    T = (a_f * ef + a_s * es) / lam
    Td = (a_f * phi_f * ef + a_s * phi_s * es) / lam
    return C * T + C_d * Td


def impulse(n_years: int, lam: Any, gamma: Any, C: Any, C_d: Any, xp: Any = np, *,
            heat: bool = False) -> Any:
    """Response at the end of year ``d`` to unit forcing held during year 0: ``S(d+1) - S(d)``."""
    d = np.arange(n_years, dtype=float)
    f = unit_step_heat if heat else unit_step
    return f(d + 1.0, lam, gamma, C, C_d, xp) - f(d, lam, gamma, C, C_d, xp)


def draws_dict(posterior: Any, names: tuple[str, ...] = EBM_PARAMS) -> dict[str, np.ndarray]:
    """Flatten ``(chain, draw)`` posterior variables to 1-D arrays in (chain, draw) order."""
    out = {}
    for k in names:
        da = posterior[k]
        if hasattr(da, "dims") and "chain" in da.dims:
            da = da.transpose("chain", "draw", ...)
        v = np.asarray(getattr(da, "values", da), dtype=float)
        out[k] = v.reshape(-1) if v.ndim <= 2 else v.reshape((-1,) + v.shape[2:])
    return out


def ensemble(forcing: np.ndarray, p: Mapping[str, np.ndarray], *, heat: bool = False) -> dict[str, np.ndarray]:
    """``T`` (K) and optionally ``H`` (W yr m⁻²) at the end of each year, shape (draws, years).

    The model starts from rest at the start of the first forcing year; ``kappa`` scales the
    forcing.
    """
    forcing = np.asarray(forcing, dtype=float)
    n = forcing.size
    lam, gamma, C, C_d = (np.atleast_1d(np.asarray(p[k], float))[:, None] for k in ("lam", "gamma", "C", "C_d"))
    kappa = np.atleast_1d(np.asarray(p["kappa"], float))[:, None]
    out = {"T": kappa * fftconvolve(impulse(n, lam, gamma, C, C_d), forcing[None, :], axes=1)[:, :n]}
    if heat:
        G = impulse(n, lam, gamma, C, C_d, heat=True)
        out["H"] = kappa * fftconvolve(G, forcing[None, :], axes=1)[:, :n]
    return out


def _ref_index(years: np.ndarray) -> np.ndarray:
    ref = np.flatnonzero((years >= REFERENCE[0]) & (years <= REFERENCE[1]))
    if ref.size != REFERENCE[1] - REFERENCE[0] + 1:
        raise ValueError(f"The forcing years {years[0]}-{years[-1]} do not cover the reference period {REFERENCE}.")
    return ref


def _year_index(years: np.ndarray, at: Any) -> np.ndarray:
    at = np.atleast_1d(np.asarray(at)).astype(int)
    idx = at - int(years[0])
    if np.any(idx < 0) or np.any(idx >= years.size):
        raise ValueError(f"Years {at.tolist()} outside the forcing years {years[0]}-{years[-1]}.")
    return idx


def anomaly_at(years: np.ndarray, forcing: np.ndarray, p: Mapping[str, np.ndarray], at: Any) -> np.ndarray:
    """EBM surface anomaly against its own 1850-1900 mean at the years ``at``, shape (draws, len(at))."""
    years = np.asarray(years, dtype=int)
    T = ensemble(forcing, p)["T"]
    return T[:, _year_index(years, at)] - T[:, _ref_index(years)].mean(axis=1, keepdims=True)


def mean_imbalance(years: np.ndarray, forcing: np.ndarray, p: Mapping[str, np.ndarray],
                   period: tuple[int, int]) -> np.ndarray:
    """Mean TOA imbalance (W m⁻²) over the calendar years ``period`` (inclusive), per draw.

    ``(H(end of last year) - H(start of first year)) / n_years``: exactly the mean of
    ``N = kappa F - lambda T`` over the period, which an ocean/Earth heat-inventory estimate
    measures (AR6 WG1 ch. 7: 0.79 [0.52 to 1.06] W m⁻² for 2006-2018).
    """
    years = np.asarray(years, dtype=int)
    lo, hi = int(period[0]), int(period[1])
    if hi < lo:
        raise ValueError(f"period must be (first, last) with last >= first, got {period}.")
    H = ensemble(forcing, p, heat=True)["H"]
    i_hi = _year_index(years, hi)[0]
    i_lo = _year_index(years, lo)[0]
    h_start = H[:, i_lo - 1] if i_lo > 0 else 0.0
    return (H[:, i_hi] - h_start) / (hi - lo + 1)


def warming_functional(years: np.ndarray, forcing: np.ndarray, at: int) -> np.ndarray:
    """Weights ``w`` with ``anomaly(at) = kappa * impulse(theta) @ w`` for one forcing path.

    ``T_n = sum_d g_d F_{n-d}``, so the anomaly at year ``at`` against the 1850-1900 mean is
    linear in the impulse response ``g``; the weights depend on the forcing only. Lets a QoI
    be evaluated with one dot product per parameter row.
    """
    years = np.asarray(years, dtype=int)
    forcing = np.asarray(forcing, dtype=float)
    n = forcing.size
    i = int(_year_index(years, at)[0])
    ref = _ref_index(years)
    d = np.arange(n)
    lagged = np.where(i - d >= 0, forcing[np.clip(i - d, 0, None)], 0.0)
    R = np.subtract.outer(ref, d)  # (ref, d): forcing index n - d
    ref_lag = np.where(R >= 0, forcing[np.clip(R, 0, None)], 0.0).mean(axis=0)
    return lagged - ref_lag


@dataclass(frozen=True)
class HSGPBasis:
    """The twin's HSGP discrepancy basis, frozen at the calibration inputs.

    Reproduces ``pm.gp.HSGP(m, c, cov_func=eta**2 * Matern32(1, ls)).prior_linearized(X)``:
    centre ``x_c = (max + min) / 2`` and boundary ``L = c (max - min) / 2`` of the calibration
    years, eigenfunctions ``phi_j(x) = L^{-1/2} sin(pi j (x - x_c + L) / (2 L))`` and the
    Matérn-3/2 spectral density ``S(w) = 12 sqrt(3) ls (3 + ls^2 w^2)^{-2}``, so that
    ``delta(x) = phi(x) @ (beta * eta * sqrt(S(w_j)))``.

    Beyond ``x_c ± L`` the basis repeats itself: the discrepancy there is not a GP
    extrapolation (see :meth:`inside`).
    """

    center: float
    L: float
    m: int

    @classmethod
    def from_inputs(cls, x: np.ndarray, m: int, c: float) -> "HSGPBasis":
        """Basis of ``HSGPDiscrepancy(m=m, c=c)`` calibrated on inputs ``x`` (1-D)."""
        x = np.asarray(x, dtype=float).reshape(-1)
        return cls(center=float((x.max() + x.min()) / 2.0), L=float(c * (x.max() - x.min()) / 2.0), m=int(m))

    @property
    def omega(self) -> np.ndarray:
        """Square roots of the Laplacian eigenvalues, ``pi j / (2 L)``."""
        return np.pi * np.arange(1, self.m + 1) / (2.0 * self.L)

    def phi(self, x: Any) -> np.ndarray:
        """Basis functions at ``x``, shape (len(x), m)."""
        xs = np.asarray(x, dtype=float).reshape(-1) - self.center
        return np.sin(np.outer(xs + self.L, self.omega)) / np.sqrt(self.L)

    def sqrt_psd(self, ls: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """``eta sqrt(S(omega_j))`` per draw, shape (draws, m)."""
        ls = np.asarray(ls, float).reshape(-1, 1)
        eta = np.asarray(eta, float).reshape(-1, 1)
        S = 12.0 * np.sqrt(3.0) * ls * (3.0 + ls**2 * self.omega[None, :] ** 2) ** -2
        return eta * np.sqrt(S)

    def delta(self, x: Any, coeffs: np.ndarray, ls: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Discrepancy of each draw at ``x``, shape (draws, len(x))."""
        return (np.asarray(coeffs, float) * self.sqrt_psd(ls, eta)) @ self.phi(x).T

    def inside(self, x: Any) -> np.ndarray:
        """Whether ``x`` lies inside the basis domain ``x_c ± L``."""
        return np.abs(np.asarray(x, float) - self.center) < self.L
