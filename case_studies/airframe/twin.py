"""The airframe twin's declaration and its data design (Virkler 2024-T3 panels).

Declaration (:func:`build_twin`): cycles-to-reach-length ``N(a)`` of a centre-cracked panel
from the Paris law with Feddersen's finite-width correction, per-specimen ``log10_C`` (rate at
``DELTA_K_REF``) and ``m`` partially pooled across specimens (non-centred), and an *embedded*
model-form discrepancy on the log10 growth rate (:func:`~case_studies.airframe.model.legendre_shape`,
Legendre orders 2-4 in ``log10 ΔK`` over the decision's crack lengths, global coefficients).
The rate is multiplied by a positive factor, so ``N(a)`` is increasing in ``a`` for every
posterior draw: the twin is physically possible by construction (a discrepancy added to the
cycles, as before, made 58-61 % of draws decrease somewhere beyond the calibrated lengths).
Embedding the discrepancy inside the physics follows Sargsyan, Huan & Najm (2019),
"Embedded model error representation for Bayesian model calibration", IJUQ 9(4).

Design (:func:`specimen_design`): all 68 specimens are used. A fixed permutation (seed
:data:`DESIGN_SEED`, independent of the run's seed) orders them; the first ``n_cal`` are
calibrated on, the next ``n_stream`` arrive one by one as the assimilation stream (new
specimens), and every other specimen is held out to validate the *population* predictive: a
new panel's cycles to each crack length, in particular to 49.8 mm. Quick mode uses fewer
calibration specimens; the design is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from vvuq_twin import Gamma, GaussianObs as Gaussian, HalfNormal, Hierarchy, NormalPrior as Normal, Parameter, Twin, TwinData

from .data import VIRKLER_CONDITIONS
from .decision import CYCLES_SCALE, DELTA_K_REF
from .model import SHAPE_ORDERS, paris_cycles_simulator

__all__ = ["build_twin", "specimen_design", "SpecimenDesign", "twin_data", "log10_dk_range",
           "SHAPE_NAMES", "A_MAX", "A0", "DESIGN_SEED", "N_CAL", "N_STREAM", "QUADRATURE", "THIN", "VALIDATION_LENGTHS",
           "CYCLES_SCALE", "DELTA_K_REF"]

#: Names of the embedded discrepancy's coefficients (Legendre orders 2, 3, 4 of log10 dK).
SHAPE_NAMES = tuple(f"rate_p{k}" for k in SHAPE_ORDERS)
A0 = float(VIRKLER_CONDITIONS["initial_half_length_mm"])
#: Longest measured half-length (mm): the critical length of the decision.
A_MAX = 49.8
_W = float(VIRKLER_CONDITIONS["width_mm"])
_DS = float(VIRKLER_CONDITIONS["stress_range_mpa"])
#: Seed of the fixed specimen permutation (the design does not depend on the run's seed).
DESIGN_SEED = 19790401
#: Calibration specimens: quick, full.
N_CAL = {True: 16, False: 32}
#: Specimens assimilated one by one after calibration (new panels): quick, full (full was 4 until
#: 2026-12-02: the SMC moves' cost is linear in the rows, and full mode must fit 15 minutes on 2 cores;
#: with the Gauss-Legendre quadrature the full run costs 458 CPU-s in all, seed 7).
N_STREAM = {True: 2, False: 2}
#: Quadrature of N(a) (panels, rule; case_studies.airframe.model.quadrature_rule): quick, full.
#: 4-point Gauss-Legendre on panels equal in log a (order 8) on 2 or 3 panels: 8 or 12 nodes per
#: row. Until 2026-12-02 the twin used Simpson on 8 or 16 panels (17 or 33 nodes), less accurate:
#: at the posterior (m 3.07, rate_p 0.02/0.12/0.02) the relative error of N(49.8 mm) against
#: Simpson on 8192 panels is 2.0e-6 with 2 panels (Simpson x 8: 1.7e-3) and 1.9e-6 with 3
#: (Simpson x 16: 1.4e-4); at m 3.0, rate_p 0.1/0.2/0.1 (far in the tails) 8.4e-5 and 3.7e-5
#: (Simpson: 4.6e-4, 4.6e-5). A likelihood evaluation's cost is linear in the nodes.
QUADRATURE = {True: (2, "gauss4_log"), False: (3, "gauss4_log")}
#: Every THIN-th measured crack length of a calibration specimen is used: quick, full.
THIN = {True: 12, False: 8}
#: Crack lengths (mm) at which the population predictive is validated on held-out specimens.
VALIDATION_LENGTHS = (15.0, 20.0, 25.0, 30.0, 35.0, 40.2, 45.0, A_MAX)


def log10_dk_range(a_max_mm: float = A_MAX, stress_range: float = _DS) -> tuple[float, float]:
    """``log10 ΔK`` (MPa m^0.5) at ``a0`` and at ``a_max_mm`` (Feddersen-corrected)."""
    a = np.array([A0, float(a_max_mm)]) * 1e-3
    dk = stress_range * np.sqrt(np.pi * a) * np.sqrt(1.0 / np.cos(np.pi * a * 1e3 / _W))
    return float(np.log10(dk[0])), float(np.log10(dk[1]))


def build_twin(*, quick: bool = True, a_max_mm: float = A_MAX, stress_range: float = _DS) -> Twin:
    """The hierarchical Paris-law twin of cycles-to-reach-length (in 1e5 cycles).

    ``N_obs(a) = N(a; log10C_s, m_s, b) + eps``: ``N`` integrates ``da / (C_s ΔK^m_s 10^{s_b(ΔK)})``
    with the embedded log10-rate discrepancy ``s_b`` (coefficients :data:`SHAPE_NAMES`, basis
    fixed on ``[a0, a_max_mm]`` at the test stress range), per-specimen ``log10_C`` and ``m``
    partially pooled (non-centred), Gaussian error on the cycle count. ``quick`` sets the
    quadrature (:data:`QUADRATURE`: 4-point Gauss-Legendre in ``log a`` on 2 or 3 panels;
    relative error of N(49.8 mm) at the posterior about 2e-6, far below the ~1 % cycle noise).
    """
    n_panels, rule = QUADRATURE[bool(quick)]
    sim = paris_cycles_simulator(a0_mm=A0, stress_range=float(stress_range), width_mm=_W,
                                 n_steps=n_panels, rule=rule, delta_k_ref=DELTA_K_REF,
                                 cycles_scale=CYCLES_SCALE, shape_names=SHAPE_NAMES,
                                 log10_dk_range=log10_dk_range(a_max_mm))
    return Twin(
        name="airframe_paris_virkler",
        simulator=sim,
        parameters=[
            # rate at dK = 12 MPa m^0.5 for 2024-T3 is of order 1e-7 m/cycle; centred: every specimen
            # informs its own rate well (the non-centred form diverges at seed 7)
            Parameter("log10_C", Normal(-7.0, 0.5), per_unit=True, pop_scale=HalfNormal(0.1), centered=True),
            # boundary-avoiding Gamma(2, 20) prior on the between-specimen sd of m (mode 0.05): its
            # posterior lies near 0 with a HalfNormal prior, a funnel that NUTS diverges in
            # (Chung, Rabe-Hesketh, Dorie, Gelman & Liu 2013, Psychometrika 78:685)
            Parameter("m", Normal(3.0, 0.7), per_unit=True, pop_scale=Gamma(2.0, 20.0)),
            # departures of log10 da/dN from a straight Paris line: +-0.2 decades a priori
            *[Parameter(n, Normal(0.0, 0.2)) for n in SHAPE_NAMES],
        ],
        observation=Gaussian(sigma=HalfNormal(0.02)),
        hierarchy=Hierarchy(dim="specimen"),
    )


@dataclass(frozen=True)
class SpecimenDesign:
    """Which specimens calibrate, arrive in the stream, and are held out (labels)."""

    calibration: tuple[str, ...]
    stream: tuple[str, ...]
    holdout: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"calibration": list(self.calibration), "stream": list(self.stream),
                "holdout": list(self.holdout), "n_calibration": len(self.calibration),
                "n_stream": len(self.stream), "n_holdout": len(self.holdout)}


def specimen_design(specimens: Sequence[str], quick: bool) -> SpecimenDesign:
    """Split all specimens by a fixed permutation: calibration, stream, hold-out (the rest).

    Quick and full mode share the permutation: quick calibrates on a prefix of full's
    calibration specimens.
    """
    specs = sorted({str(s) for s in specimens}, key=lambda s: (len(s), s))
    n_cal, n_st = N_CAL[bool(quick)], N_STREAM[bool(quick)]
    if len(specs) < n_cal + n_st + 10:
        raise ValueError(f"specimen_design needs at least {n_cal + n_st + 10} specimens, got {len(specs)}.")
    perm = [specs[i] for i in np.random.default_rng(DESIGN_SEED).permutation(len(specs))]
    return SpecimenDesign(tuple(perm[:n_cal]), tuple(perm[n_cal:n_cal + n_st]), tuple(perm[n_cal + n_st:]))


def twin_data(ds: Any, specimens: Sequence[str], thin: int) -> TwinData:
    """TwinData of the chosen specimens: every ``thin``-th crack length counted back from the
    longest (so 49.8 mm is always included), the a0 row (0 cycles) dropped."""
    spec = ds["specimen"].values
    keep = np.zeros(spec.size, dtype=bool)
    for s in specimens:
        idx = np.flatnonzero(spec == s)
        keep[idx[::-1][::int(thin)]] = True
    keep &= ds["cycles"].values > 0
    sub = ds.isel(obs=np.flatnonzero(keep))
    return TwinData(x=sub["crack_half_length"].values, y=sub["cycles"].values / CYCLES_SCALE,
                    unit=sub["specimen"].values.astype(str), input_names=["crack_half_length_mm"],
                    obs=sub["obs"].values)


def holdout_matrix(ds: Any, specimens: Sequence[str], lengths: Sequence[float] = VALIDATION_LENGTHS) -> np.ndarray:
    """Cycles (1e5) of each held-out specimen at each validation length, shape (n_spec, n_len)."""
    spec, a, n = ds["specimen"].values, ds["crack_half_length"].values, ds["cycles"].values
    out = np.empty((len(specimens), len(lengths)))
    for i, s in enumerate(specimens):
        sel = spec == s
        for j, L in enumerate(lengths):
            k = np.flatnonzero(sel & np.isclose(a, L))
            if k.size != 1:
                raise ValueError(f"Specimen {s!r} has no measurement at {L} mm.")
            out[i, j] = n[k[0]] / CYCLES_SCALE
    return out
