"""Two-layer energy-balance model of global-mean temperature (Held et al. 2010; Geoffroy et al. 2013).

::

    C   dT/dt   = F(t) - λ T - ε γ (T - T_d)
    C_d dT_d/dt = γ (T - T_d)

``T``: surface (upper-layer) temperature anomaly (K); ``T_d``: deep-ocean anomaly (K); ``F``:
effective radiative forcing (W m⁻²); ``λ``: climate feedback parameter (W m⁻² K⁻¹); ``γ``:
heat-exchange coefficient (W m⁻² K⁻¹); ``C``, ``C_d``: heat capacities (W yr m⁻² K⁻¹); ``ε``:
deep-ocean heat-uptake efficacy (Geoffroy et al. 2013b; ``ε = 1`` is the model of Held et al.
2010 and Geoffroy et al. 2013a). Time in years. The equilibrium climate sensitivity is
``F_2x / λ`` and the top-of-atmosphere imbalance (ocean heat uptake) is
``N = F - λ T - (ε - 1) γ (T - T_d)``.

- :func:`step_response` — the closed-form two-timescale response to a step forcing
  (Geoffroy et al. 2013a, Part I, Eqs. 10-13 for ε = 1), in NumPy: the known answer of the
  integrator.
- :func:`step_response_expm` — the same for any ε from the matrix exponential (independent
  check).
- :func:`two_layer_ebm` — pytensor integration driven by an annual forcing series (each year's
  forcing held constant over that year), classical RK4 with ``n_substeps`` steps per year inside
  ``pytensor.scan``; differentiable in all parameters. Returns the state at the *end* of each
  year.
- :func:`ebm_simulator` — a vvuq_twin simulator of the anomaly against a reference period
  (default 1850-1900, as the HadCRUT5 column ``annual_1850to1900``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pytensor
import pytensor.tensor as pt
from scipy.linalg import expm

from vvuq_twin import PytensorSimulator
from vvuq_twin.exceptions import TwinSpecificationError

__all__ = [
    "StepResponse",
    "GEOFFROY_CMIP5_MEAN",
    "step_response",
    "step_response_expm",
    "two_layer_ebm",
    "ebm_simulator",
]

#: Approximate multi-model mean two-layer parameters of the CMIP5 abrupt-4xCO2 fits of
#: Geoffroy et al. (2013a) (λ, γ in W m⁻² K⁻¹; C, C_d in W yr m⁻² K⁻¹; F_4x in W m⁻²), to two
#: significant figures. Checked against secondary restatements of the paper's table (C = 7.3,
#: C_0 = 106, γ = 0.73-0.74, λ = 1.13), not against the paper itself; they give time scales of
#: 3.9 and 242 years, close to the 4.1 and 249 years used for the AR6 WG1 ch. 6 figures.
GEOFFROY_CMIP5_MEAN: dict[str, float] = {"lam": 1.13, "gamma": 0.73, "C": 7.3, "C_d": 106.0, "F_4x": 7.3}


@dataclass(frozen=True)
class StepResponse:
    """Closed-form response to a step forcing ``F`` switched on at ``t = 0``.

    Attributes
    ----------
    T, T_d : ndarray
        Surface and deep-ocean temperature anomalies at the requested times.
    tau_f, tau_s : float
        Fast and slow time scales (years).
    a_f, a_s : float
        Equilibrium fractions of the fast and slow modes (``a_f + a_s = 1``).
    """

    T: np.ndarray
    T_d: np.ndarray
    tau_f: float
    tau_s: float
    a_f: float
    a_s: float


def _check_params(lam: float, gamma: float, C: float, C_d: float) -> None:
    for name, v in (("lam", lam), ("gamma", gamma), ("C", C), ("C_d", C_d)):
        if not (np.isfinite(v) and v > 0):
            raise TwinSpecificationError(f"Two-layer EBM parameter {name} must be positive and finite, got {v}.")


def modes(lam: Any, gamma: Any, C: Any, C_d: Any, xp: Any = np) -> tuple[Any, ...]:
    """Time scales and mode amplitudes ``(tau_f, tau_s, phi_f, phi_s, a_f, a_s)`` of the two-layer
    EBM (Geoffroy et al. 2013a, eps = 1; formulas in :func:`step_response`), elementwise in
    ``xp`` (NumPy by default), so that arrays of posterior draws work too."""
    b = (lam + gamma) / C + gamma / C_d
    bs = (lam + gamma) / C - gamma / C_d
    sd = xp.sqrt(b * b - 4.0 * lam * gamma / (C * C_d))
    tau_f = C * C_d * (b - sd) / (2.0 * lam * gamma)
    tau_s = C * C_d * (b + sd) / (2.0 * lam * gamma)
    phi_f = C * (bs - sd) / (2.0 * gamma)
    phi_s = C * (bs + sd) / (2.0 * gamma)
    a_f = phi_s * tau_f * lam / (C * (phi_s - phi_f))
    a_s = -phi_f * tau_s * lam / (C * (phi_s - phi_f))
    return tau_f, tau_s, phi_f, phi_s, a_f, a_s


def step_response(t: Any, F: float, lam: float, gamma: float, C: float, C_d: float) -> StepResponse:
    """Two-timescale closed form of Geoffroy et al. (2013a) for a step forcing ``F`` (ε = 1).

    With ``b = (λ+γ)/C + γ/C_d``, ``b* = (λ+γ)/C - γ/C_d``, ``δ = b² - 4λγ/(C C_d)``::

        τ_f = C C_d (b - √δ) / (2λγ),   τ_s = C C_d (b + √δ) / (2λγ)
        φ_f = C (b* - √δ) / (2γ),       φ_s = C (b* + √δ) / (2γ)
        a_f = φ_s τ_f λ / (C (φ_s - φ_f)),  a_s = -φ_f τ_s λ / (C (φ_s - φ_f))
        T(t)   = F/λ [a_f (1 - e^{-t/τ_f}) + a_s (1 - e^{-t/τ_s})]
        T_d(t) = F/λ [a_f φ_f (1 - e^{-t/τ_f}) + a_s φ_s (1 - e^{-t/τ_s})]
    """
    _check_params(lam, gamma, C, C_d)
    t = np.asarray(t, dtype=float)
    tau_f, tau_s, phi_f, phi_s, a_f, a_s = modes(lam, gamma, C, C_d)
    ef = 1.0 - np.exp(-t / tau_f)
    es = 1.0 - np.exp(-t / tau_s)
    T = F / lam * (a_f * ef + a_s * es)
    T_d = F / lam * (a_f * phi_f * ef + a_s * phi_s * es)
    return StepResponse(T=T, T_d=T_d, tau_f=float(tau_f), tau_s=float(tau_s), a_f=float(a_f), a_s=float(a_s))


def step_response_expm(
    t: Any, F: float, lam: float, gamma: float, C: float, C_d: float, efficacy: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Step response ``(T, T_d)`` from the matrix exponential, ``x(t) = A⁻¹(e^{At} - I) b F``."""
    _check_params(lam, gamma, C, C_d)
    A = np.array([[-(lam + efficacy * gamma) / C, efficacy * gamma / C], [gamma / C_d, -gamma / C_d]])
    bvec = np.array([F / C, 0.0])
    Ainv_b = np.linalg.solve(A, bvec)
    out = np.array([(expm(A * ti) - np.eye(2)) @ Ainv_b for ti in np.atleast_1d(np.asarray(t, float))])
    return out[:, 0], out[:, 1]


def two_layer_ebm(
    forcing: Any,
    lam: Any,
    gamma: Any,
    C: Any,
    C_d: Any,
    *,
    efficacy: Any = 1.0,
    n_substeps: int = 4,
    T0: Any = 0.0,
    Td0: Any = 0.0,
    dt: float = 1.0,
) -> dict[str, pt.TensorVariable]:
    """Integrate the two-layer EBM over an annual forcing series with RK4 in ``pytensor.scan``.

    Parameters
    ----------
    forcing : array_like or tensor, shape (n_years,)
        Forcing of each year (W m⁻²), held constant within the year.
    lam, gamma, C, C_d, efficacy : scalar tensors or floats
        Model parameters (see module docstring).
    n_substeps : int
        RK4 steps per year (step ``dt / n_substeps``).
    T0, Td0 : float
        Initial anomalies at the start of the first year.
    dt : float
        Length of one forcing interval in years.

    Returns
    -------
    dict
        ``T``, ``T_d`` (end of each year) and ``N`` (TOA imbalance at the end of each year,
        W m⁻²), each of shape (n_years,).
    """
    if int(n_substeps) < 1:
        raise TwinSpecificationError(f"n_substeps must be >= 1, got {n_substeps}.")
    F = pt.cast(pt.as_tensor_variable(forcing), "float64")
    h = dt / int(n_substeps)

    def rhs(T, Td, f, lam, gamma, C, C_d, efficacy):
        dT = (f - lam * T - efficacy * gamma * (T - Td)) / C
        dTd = gamma * (T - Td) / C_d
        return dT, dTd

    # parameters enter the scan as non_sequences (not closure variables), so that PyMC can
    # replace random variables by their values when it builds the log-density
    def substep(f, T, Td, h, *theta):
        k1 = rhs(T, Td, f, *theta)
        k2 = rhs(T + h / 2 * k1[0], Td + h / 2 * k1[1], f, *theta)
        k3 = rhs(T + h / 2 * k2[0], Td + h / 2 * k2[1], f, *theta)
        k4 = rhs(T + h * k3[0], Td + h * k3[1], f, *theta)
        return (T + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]),
                Td + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]))

    zero = 0.0 * pt.as_tensor_variable(lam)
    T_init = pt.cast(pt.as_tensor_variable(T0) + zero, "float64")
    Td_init = pt.cast(pt.as_tensor_variable(Td0) + zero, "float64")
    # one scan over all substeps (forcing repeated within each year); the step length is an
    # input, so the compiled inner function is the same for every n_substeps
    n_sub = int(n_substeps)
    F_sub = pt.repeat(F, n_sub)
    h_t = pt.as_tensor_variable(np.float64(h))
    T_all, Td_all = pytensor.scan(substep, sequences=[F_sub], outputs_info=[T_init, Td_init],
                                  non_sequences=[h_t, *[pt.cast(pt.as_tensor_variable(v), "float64")
                                                        for v in (lam, gamma, C, C_d, efficacy)]],
                                  strict=False, return_updates=False)
    T = T_all[n_sub - 1::n_sub]
    Td = Td_all[n_sub - 1::n_sub]
    N = F - lam * T - (efficacy - 1.0) * gamma * (T - Td)
    return {"T": T, "T_d": Td, "N": N}


def ebm_simulator(
    years: Sequence[int],
    forcing: Sequence[float],
    *,
    reference: tuple[int, int] | None = (1850, 1900),
    n_substeps: int = 4,
    output: str = "T",
    forcing_scale_param: str | None = None,
) -> PytensorSimulator:
    """A vvuq_twin simulator of the EBM at requested years (input column 0 = calendar year).

    Parameters
    ----------
    years, forcing : sequence
        The annual forcing series (contiguous years) that drives the model from rest at the
        start of ``years[0]``.
    reference : (int, int) or None
        Express ``T`` as an anomaly against its mean over these years (inclusive), as
        HadCRUT5's ``annual_1850to1900``; ``None`` keeps the anomaly against the start year.
    n_substeps : int
        RK4 steps per year.
    output : {"T", "T_d", "N"}
        Which output to return.
    forcing_scale_param : str, optional
        Name of a calibration parameter multiplying the forcing (forcing uncertainty).

    The calibration parameters are ``lam``, ``gamma``, ``C``, ``C_d`` and optionally
    ``efficacy`` (default 1) and the forcing scale. Requested years outside ``years`` are an
    error at graph-construction time only when given as constants; keep ``x`` within range.
    """
    years = np.asarray(years, dtype=int)
    forcing = np.asarray(forcing, dtype=float)
    if years.ndim != 1 or years.shape != forcing.shape:
        raise TwinSpecificationError(
            f"years and forcing must be 1-D and of equal length, got {years.shape} and {forcing.shape}."
        )
    if np.any(np.diff(years) != 1):
        raise TwinSpecificationError("years must be contiguous and increasing (one forcing value per year).")
    if output not in ("T", "T_d", "N"):
        raise TwinSpecificationError(f"output must be 'T', 'T_d' or 'N', got {output!r}.")
    ref_idx = None
    if reference is not None:
        lo, hi = reference
        if lo < years[0] or hi > years[-1] or hi < lo:
            raise TwinSpecificationError(
                f"reference period {reference} must lie within the forcing years {years[0]}-{years[-1]}."
            )
        ref_idx = np.arange(lo - years[0], hi - years[0] + 1)
    y0 = int(years[0])

    def fn(x, p: Mapping[str, Any]):
        f = pt.as_tensor_variable(forcing)
        if forcing_scale_param is not None:
            f = f * p[forcing_scale_param]
        res = two_layer_ebm(
            f, p["lam"], p["gamma"], p["C"], p["C_d"], efficacy=p.get("efficacy", 1.0),
            n_substeps=n_substeps,
        )
        series = res[output]
        if ref_idx is not None and output != "N":
            series = series - pt.mean(series[ref_idx])
        idx = pt.cast(pt.round(x[:, 0] - y0), "int64")
        return series[idx]

    return PytensorSimulator(fn, name=f"two_layer_ebm_{output}")
