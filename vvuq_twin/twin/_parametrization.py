"""Centred or non-centred: the automatic choice for a per-unit parameter (``centered="auto"``).

A per-unit parameter is pooled as ``lin_u ~ N(mu, sigma)`` on its link scale. Written *centred*,
the sampler moves ``lin_u`` itself; written *non-centred*, it moves ``z_u`` with
``lin_u = mu + sigma z_u``. Which geometry is easier depends on how much each unit's data say
about its own parameter compared with the population scale (Papaspiliopoulos, Roberts & Skold
2007, Statistical Science 22:59-73; Betancourt & Girolami 2013, arXiv:1312.0906). In the normal
hierarchical model ``y_ui ~ N(lin_u, s^2)`` (``n_u`` observations), ``lin_u ~ N(mu, tau^2)``, the
Gibbs sampler's rate of convergence is ``1 / (1 + r_u)`` centred and ``r_u / (1 + r_u)``
non-centred, with the information ratio

    ``r_u = tau^2 * I_u``,  ``I_u = n_u / s^2``  (the Fisher information of unit u's data about lin_u):

centred is the better geometry when ``r_u > 1`` (the unit's data pin its parameter more tightly
than the population does: a funnel is what the non-centred form then creates), non-centred when
``r_u < 1`` (weakly informed units: the centred form is the funnel). For NUTS the same geometry
decides (Betancourt & Girolami 2013).

:func:`choose_parametrization` evaluates that rule on the declaration before any sampling, for
general simulators and observation models:

* ``I_u`` is the expected Fisher information of unit u's observations about ``lin_u`` at the
  prior reference point (each global parameter at its prior mean, every unit's ``lin_u`` at the
  prior mean of the population location, the noise at the mean of its prior, the population
  scale ``tau`` at the mean of its prior or its fixed value): the variance of the score, the
  derivative (central difference) of the declared observation log-density with respect to
  ``lin_u``, over replicate observations drawn from the declared observation model at that
  point (a fixed internal seed, so the choice is reproducible). It counts the number of
  observations of each unit, the simulator's sensitivity to the parameter and the noise.
* The block is centred when the median of ``r_u`` over the units is above 1, else non-centred
  (one choice per parameter: the declaration's unit). Units without observations count with
  ``r_u = 0``.

What it leaves out, and so when to declare ``centered=True/False`` yourself: the discrepancy's
variance (it lowers the information: with a large discrepancy the rule leans towards centred),
the difference between the prior reference point and the posterior (for a strongly non-linear
simulator the information can change by orders of magnitude between them) and, above all,
**a shared parameter confounded with every unit's parameter**. The rule is derived for the
normal hierarchy, which has none. Measured (``benchmarks/RESULTS.md``, issue #18): on the
benchmark twin of ``benchmarks/bench_core.py`` (per-unit decay rate, no shared simulator
parameter) it chooses centred and that is right (ESS/s 1.3x the non-centred form, no
divergences where the non-centred form had 1-6 per run); on the tumor twin (per-mouse growth
rate beta, shared carrying capacity k) it chooses centred too (ratio 57 at the prior
reference, about 9 at the posterior's population scale), and that is wrong with nutpie's
diagonal mass matrix: posterior corr(k, log beta_u) is about -0.84 for every mouse, so the
centred form has a ridge through k and all 20 unit values together (bulk ESS of k 27 against 417
non-centred, seed 1), which the non-centred form folds into (k, mu). A Gaussian approximation
at the reference point sees the correlation (-0.77) but its condition number (430 centred, 452
non-centred at the posterior's scale) does not predict the difference either. With
``calibrate(..., mass_matrix="low_rank")`` (the case studies' setting), which adapts to that one
ridge direction, the centred choice is right on the tumor twin as well: ESS/s 2.9x the
non-centred form with the same mass matrix (median of 5 seeds). So ``"auto"`` is an option, not the default: with the default
diagonal mass matrix, declare the choice where a shared parameter is confounded with the units
(or use the low-rank mass matrix). The choice and the numbers behind it are recorded in the calibration's
``info["parametrization"]`` and its ledger.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["choose_parametrization", "INFORMATION_THRESHOLD", "N_REPLICATES"]

#: centred when the median information ratio tau^2 I_u exceeds this (PRS 2007: rates cross at 1)
INFORMATION_THRESHOLD = 1.0
#: replicate observation sets for the expected Fisher information
N_REPLICATES = 256
#: relative step (link scale) of the central difference
_STEP = 1e-4
_SEED = 20070201

_MEMO: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}


def _ref(v: Any) -> float:
    from .priors import Prior

    return float(v.mean()) if isinstance(v, Prior) else float(v)


def choose_parametrization(twin: Any, data: Any) -> dict[str, dict[str, Any]]:
    """The centred/non-centred choice for every per-unit parameter of ``twin`` on ``data``.

    Parameters
    ----------
    twin : Twin
    data : TwinData
        The calibration data (their inputs, units, known sds and missing mask; not ``y``).

    Returns
    -------
    dict
        Parameter name -> record: ``centered`` (bool), ``source`` (``"declared"``, ``"auto"``,
        or ``"chosen"`` for an ``"auto"`` parameter already fixed by
        :meth:`~vvuq_twin.twin.Twin.with_parametrization`) and, for ``"auto"``, ``reason``, ``information_ratio`` (median, min, max
        over the units), ``obs_per_unit`` (median, min, max), ``pop_scale_reference``,
        ``threshold``. The same declaration and data structure always give the same choice.
    """
    # the hash of a twin fixed by Twin.with_parametrization is that of its "auto" declaration:
    # the key also holds each parameter's current state
    key = (twin.hash, data.structure_hash, tuple(str(p.centered) for p in twin.parameters if p.per_unit))
    if key in _MEMO:
        return {k: dict(v) for k, v in _MEMO[key].items()}
    out: dict[str, dict[str, Any]] = {}
    auto = [p for p in twin.parameters if p.per_unit and p.centered == "auto"]
    for p in twin.parameters:
        if p.per_unit and p.centered != "auto":
            out[p.name] = ({"centered": bool(p.centered), "source": "chosen",
                            "reason": "declared centered='auto'; fixed by Twin.with_parametrization "
                                      "(e.g. the calibrated twin, TwinResult.twin)"}
                           if p._auto else {"centered": bool(p.centered), "source": "declared"})
    if auto:
        out.update(_auto_choice(twin, data, auto))
    _MEMO[key] = out
    return {k: dict(v) for k, v in out.items()}


def _auto_choice(twin: Any, data: Any, auto: list[Any]) -> dict[str, dict[str, Any]]:
    unit_idx, units = twin.unit_index(data)
    n_units = len(units)
    mask = np.asarray(data.observed_mask, bool)
    counts = np.bincount(unit_idx[mask], minlength=n_units)
    # the twin written centred everywhere: draws give lin_u directly
    probe = dataclasses.replace(twin, parameters=tuple(
        dataclasses.replace(p, centered=True) if p.per_unit else p for p in twin.parameters))
    base: dict[str, np.ndarray] = {}
    for p in probe.parameters:
        if p.per_unit:
            base[f"{p.name}_mu"] = np.array([p.prior.mean()])
            base[f"{p.name}_lin"] = np.full((1, n_units), float(p.prior.mean()))
        else:
            base[p.name] = np.array([float(p.prior.mean())])
    for name, prior in twin.observation.noise_priors().items():
        base[name] = np.array([prior.mean()])
    rows = [base]
    for p in auto:
        for sgn in (1.0, -1.0):
            d = {k: v.copy() for k, v in base.items()}
            d[f"{p.name}_lin"] = d[f"{p.name}_lin"] + sgn * _STEP
            rows.append(d)
    draws = {k: np.concatenate([r[k] for r in rows], axis=0) for k in base}
    eta, extra = probe.simulate(draws, data)
    noise = twin.observation.noise_values(draws, eta.shape[0])
    zero = np.zeros_like(eta)
    zeta = twin.observation.combine_numpy(eta, zero)
    sd = twin.observation.scale_numpy(noise, zeta, data.y_sd, extra)
    idx = np.flatnonzero(mask)
    noise0 = {k: v[:1] for k, v in noise.items()}
    rng = np.random.default_rng(_SEED)
    y = twin.observation.sample(np.repeat(zeta[:1, idx], N_REPLICATES, axis=0),
                                np.repeat(sd[:1, idx], N_REPLICATES, axis=0), noise0, rng)
    out = {}
    for j, p in enumerate(auto):
        lp = []
        for r in (1 + 2 * j, 2 + 2 * j):
            nr = {k: v[r:r + 1] for k, v in noise.items()}
            with np.errstate(divide="ignore", invalid="ignore"):
                lp.append(np.asarray(twin.observation.logpdf(y, zeta[r:r + 1, idx], sd[r:r + 1, idx], nr), float))
        score_rows = (lp[0] - lp[1]) / (2.0 * _STEP)  # (replicates, observed rows)
        score = np.zeros((N_REPLICATES, n_units))
        np.add.at(score.T, unit_idx[idx], score_rows.T)
        info = np.nan_to_num(np.mean(score**2, axis=0), nan=0.0, posinf=0.0)
        tau = _ref(p.pop_scale)
        ratio = tau**2 * info
        med = float(np.median(ratio))
        centred = bool(med > INFORMATION_THRESHOLD)
        reason = (
            f"median information ratio tau^2 I_u = {med:.3g} over {n_units} units "
            f"({'>' if centred else '<='} {INFORMATION_THRESHOLD:g}; {int(np.median(counts))} "
            f"observations per unit in the median, population scale {tau:.3g} at its prior mean): "
            + ("each unit's data inform its parameter more than the population does, centred"
               if centred else "the units' data are weak against the population scale, non-centred")
        )
        out[p.name] = {
            "centered": centred, "source": "auto", "reason": reason,
            "information_ratio": {"median": med, "min": float(ratio.min()), "max": float(ratio.max())},
            "obs_per_unit": {"median": float(np.median(counts)), "min": int(counts.min()), "max": int(counts.max())},
            "pop_scale_reference": tau, "threshold": INFORMATION_THRESHOLD,
        }
    return out
