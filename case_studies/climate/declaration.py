"""The climate twin's declaration: two-layer EBM (exact convolution), HSGP discrepancy, AR(1) noise.

- :func:`convolution_ebm` -- the two-layer energy-balance model solved exactly for annual
  piecewise-constant forcing (convolution with the closed-form step response): the simulator
  the calibration runs. It is a closed form, so the loop's Verify step reports NOT APPLICABLE
  (there is no discretisation to refine); the RK4 integrator of :mod:`.model` is checked
  against it in the tests only.
- :func:`build_twin` -- the declaration: an optional ENSO regressor (Niño-3.4), priors around the CMIP5 two-layer fits of Geoffroy et
  al. (2013a), a forcing scale ``kappa``, a Matérn-3/2 HSGP discrepancy whose basis covers the
  years 1800-2150 (so that its posterior process can be read out to 2100), and interannual
  variability as a stationary AR(1) process (:class:`vvuq_twin.twin.observation.GaussianAR1Obs`):
  year-to-year persistence (ENSO) is noise, not signal.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytensor.tensor as pt

from vvuq_twin import (
    Beta,
    GaussianAR1Obs,
    GaussianObs,
    HalfNormal,
    HSGPDiscrepancy,
    LogNormal,
    NormalPrior,
    Parameter,
    PytensorSimulator,
    Twin,
)

from . import emulator as E
from .model import GEOFFROY_CMIP5_MEAN

__all__ = ["build_twin", "convolution_ebm", "HSGP_CENTER", "HSGP_L", "F2X", "GEOFFROY_TIMESCALES"]

#: Effective radiative forcing of doubled CO2 (W m^-2), IPCC AR6 WG1 ch. 7 central value.
F2X = 3.93
#: Fast and slow time scales (years) of the CMIP5 two-layer fits of Geoffroy et al. (2013a),
#: multi-model mean as used for the AR6 WG1 ch. 6 GSAT figures (quoted from a secondary source).
GEOFFROY_TIMESCALES = {"tau_f": 4.1, "tau_s": 249.0}
#: HSGP basis geometry (years): centre and boundary, so that 1800-2150 lies inside [-L, L].
HSGP_CENTER = 1975.0
HSGP_L = 175.0


def convolution_ebm(years: np.ndarray, forcing: np.ndarray, enso: np.ndarray | None = None) -> PytensorSimulator:
    """The two-layer EBM solved exactly for annual piecewise-constant forcing (no time stepping).

    ``T_n = kappa sum_{k<=n} F_k [S(n-k+1) - S(n-k)]`` with the closed-form step response S;
    anomaly against the model's own 1850-1900 mean, read at the requested years (input 0).
    With ``enso`` (an annual ENSO index on ``years``, 0 where unknown), the observed internal
    variability ``beta_enso * enso_n`` is added after the reference is removed: an exogenous
    regressor like the forcing, zero (neutral) beyond the record, so that forecasts past the
    data are of the ENSO-neutral temperature.
    The simulator's name carries a hash of the years, forcing and index (the declaration hash of
    a :class:`~vvuq_twin.PytensorSimulator` then differs between forcing worlds).
    """
    years = np.asarray(years, dtype=int)
    forcing = np.asarray(forcing, dtype=float)
    if years.shape != forcing.shape or years.ndim != 1:
        raise ValueError(f"years and forcing must be 1-D of equal length, got {years.shape} and {forcing.shape}.")
    if enso is not None:
        enso = np.asarray(enso, dtype=float)
        if enso.shape != years.shape or not np.all(np.isfinite(enso)):
            raise ValueError(f"enso must be finite and of the years' shape {years.shape}, got {enso.shape} "
                             "(use 0 for years without an index).")
    n = years.size
    D = np.subtract.outer(np.arange(n), np.arange(n))
    A = np.where(D >= 0, forcing[np.clip(D, 0, None)], 0.0)
    ref = (years >= 1850) & (years <= 1900)
    y0 = int(years[0])
    digest = hashlib.sha256(years.tobytes() + forcing.tobytes()
                            + (b"" if enso is None else enso.tobytes())).hexdigest()[:12]

    def fn(x, p):
        g = E.impulse(n, p["lam"], p["gamma"], p["C"], p["C_d"], pt)
        T = p["kappa"] * pt.dot(A, g)
        T = T - pt.mean(T[np.flatnonzero(ref)])
        if enso is not None:
            T = T + p["beta_enso"] * enso
        return T[pt.cast(pt.round(x[:, 0] - y0), "int64")]

    return PytensorSimulator(fn, name=f"two_layer_ebm_convolution[{years[0]}-{years[-1]}:{digest}]")


def build_twin(years: np.ndarray, forcing: np.ndarray, *, quick: bool = True, noise: str = "ar1",
               enso: np.ndarray | None = None) -> Twin:
    """Two-layer EBM twin of the HadCRUT5 anomaly (vs 1850-1900).

    Parameters
    ----------
    years, forcing : array
        Forcing years (from 1750) and the effective radiative forcing (W m^-2) driving the model.
    quick : bool
        Fewer HSGP basis functions (32 instead of 48).
    noise : {"ar1", "iid"}
        Interannual variability as a stationary AR(1) process (default) or independent
        Gaussian noise (the earlier declaration, kept for the comparison in the tests).
    enso : array, optional
        Annual ENSO index on ``years`` (:func:`.data.load_nino34`, 0 where unknown): adds the
        regressor ``beta_enso * enso`` (°C per °C of Niño-3.4) with a weakly informative prior
        N(0, 0.2), not centred on the ~0.1 of the literature.
    """
    if noise not in ("ar1", "iid"):
        raise ValueError(f"noise must be 'ar1' or 'iid', got {noise!r}.")
    g = GEOFFROY_CMIP5_MEAN
    obs: Any = (GaussianAR1Obs(sigma=HalfNormal(0.15), phi=Beta(2.0, 2.0)) if noise == "ar1"
                else GaussianObs(sigma=HalfNormal(0.15)))
    return Twin(
        name="climate_two_layer_ebm_hadcrut5",
        simulator=convolution_ebm(years, forcing, enso),
        parameters=[
            Parameter("lam", LogNormal(float(np.log(g["lam"])), 0.35)),
            Parameter("gamma", LogNormal(float(np.log(g["gamma"])), 0.3)),
            Parameter("C", LogNormal(float(np.log(g["C"])), 0.25)),
            Parameter("C_d", LogNormal(float(np.log(g["C_d"])), 0.4)),
            Parameter("kappa", NormalPrior(1.0, 0.1)),
        ] + ([] if enso is None else [Parameter("beta_enso", NormalPrior(0.0, 0.2))]),
        discrepancy=HSGPDiscrepancy(m=32 if quick else 48, kernel="Matern32", center=[HSGP_CENTER],
                                    L=[HSGP_L], ls=LogNormal(float(np.log(20.0)), 0.5),
                                    eta=HalfNormal(0.1)),
        observation=obs,
    )
