"""Steps 3b and 5-9 of the climate case study's VVUQ loop (called by :mod:`.run`).

- :func:`sbc_step` -- simulation-based calibration of the twin's inference
  (:func:`vvuq_twin.verification.sbc_twin`);
- :func:`forcing_path`, :func:`decide` -- the decision under risk: the largest scaling ``s`` of
  the post-2022 SSP2-4.5 forcing change with ``P(warming in 2100 > 2 °C) <= 0.33``, solved
  exactly (warming is affine in ``s``), with the buffered (CVaR) counterpart by the
  linear program of :func:`vvuq_twin.decisions.solve`;
- :func:`sensitivity_step` -- Shapley effects of the decision quantity (2100 warming on the
  chosen path) over the correlated posterior of the EBM parameters
  (:func:`vvuq_twin.sensitivity.shapley_effects`);
- :func:`reweight_utilities` -- the estimators of :func:`vvuq_twin.design.twin_design_utilities`
  for a measurement that the twin's ``predict`` cannot produce (the Earth energy imbalance, i.e.
  total ocean heat uptake), on the same posterior draws;
- :func:`numpy_prior`, :func:`assimilate_years` -- SMC assimilation of new annual anomalies
  (:func:`vvuq_twin.assimilation.smc_update`) with the twin's exact likelihood
  (:class:`~case_studies.climate.emulator.TwinLikelihood`);
- :func:`replicate_worlds` -- the twin replicated into SSP forcing worlds with
  :func:`vvuq_twin.operations.replicate`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy import stats

from vvuq_twin.assimilation import ParticlePosterior, smc_update
from vvuq_twin.decisions import (
    AffineInDecision,
    BufferedConstraint,
    Decision,
    DecisionVariable,
    InfeasibleDecisionError,
    solve,
)
from vvuq_twin.design import preposterior_utility
from vvuq_twin.operations import Scenario, replicate
from vvuq_twin.sensitivity import PosteriorSpace, shapley_effects
from vvuq_twin.verification import sbc_twin

from . import emulator as E

__all__ = [
    "FREE_VARS",
    "free_vars",
    "SBC_QUANTITIES",
    "sbc_quantities",
    "sbc_step",
    "forcing_path",
    "PathDecision",
    "decide",
    "Warming2100",
    "sensitivity_step",
    "reweight_utilities",
    "numpy_prior",
    "assimilate_years",
    "replicate_worlds",
]

def free_vars(twin: Any) -> tuple[str, ...]:
    """Free random variables of the twin's PyMC model, as the declaration names them.

    In the order the SMC particles carry them: the calibration parameters, the discrepancy's
    latent basis coefficients, then the hyperparameters (discrepancy, noise).
    """
    params = tuple(twin.parameter_names)
    hyper = tuple(twin.hyperparameter_names())
    latent = tuple(n for n in twin.free_variable_names() if n not in params + hyper)
    return params + latent + hyper


def sbc_quantities(twin: Any) -> tuple[str, ...]:
    """Quantities ranked by SBC: the calibration parameters and the hyperparameters."""
    return tuple(twin.parameter_names) + tuple(twin.hyperparameter_names())


def _skeleton_twin() -> Any:
    """The climate twin's declaration on a two-year record (its structure does not depend on
    the forcing, so it answers the names)."""
    from .run import build_twin

    return build_twin(np.array([1850.0, 1851.0]), np.zeros(2))


def __getattr__(name: str) -> Any:
    # FREE_VARS and SBC_QUANTITIES of the climate twin, answered by its declaration
    if name in ("FREE_VARS", "SBC_QUANTITIES"):
        twin = _skeleton_twin()
        globals().update(FREE_VARS=free_vars(twin), SBC_QUANTITIES=sbc_quantities(twin))
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------ 3b: SBC


def sbc_step(twin: Any, template: Any, *, n_sims: int, draws: int, tune: int, chains: int,
             seed: int, familywise: float = 0.05) -> Any:
    """SBC of the twin's NUTS calibration at the inputs of ``template``.

    The template is the calibration record itself (same inputs, ``y`` replaced by prior
    predictive draws): calibrations of SBC replications then reuse the compiled model of the
    main calibration (:func:`vvuq_twin.calibrate` caches by declaration and data structure).
    Each quantity's simultaneous ECDF band has level ``1 - familywise / Q`` (Bonferroni over the
    ``Q`` ranked quantities), so that a correct inference fails SBC with probability at most
    ``familywise``.
    """
    quantities = sbc_quantities(twin)  # the joint log-likelihood ``log_lik`` is always added
    q = len(quantities) + 1
    return sbc_twin(twin, template, n_sims, draws=draws, tune=tune, chains=chains, rng=seed,
                    var_names=list(quantities), prob=1.0 - familywise / q)


# ------------------------------------------------------------------ 6: decision
def forcing_path(base_forcing: np.ndarray, i_now: int, s: float) -> np.ndarray:
    """Forcing with the change after index ``i_now`` scaled by ``s`` (``s = 1``: the scenario)."""
    f = np.array(base_forcing, dtype=float)
    f[i_now + 1:] = f[i_now] + s * (f[i_now + 1:] - f[i_now])
    return f


@dataclass(frozen=True)
class Warming2100:
    """2100 warming per draw as ``w(s) = w0 + s * w1 + delta``, affine in the path scale ``s``.

    ``w0``: EBM warming with the forcing frozen after 2022; ``w1``: response to the SSP2-4.5
    forcing change after 2022; ``delta``: model discrepancy in 2100, drawn from its prior
    ``N(0, eta)`` per draw (80 years past the data the discrepancy is its prior).
    """

    w0: np.ndarray
    w1: np.ndarray
    delta: np.ndarray

    @classmethod
    def from_draws(cls, years: np.ndarray, forcing: np.ndarray, i_now: int,
                   p: Mapping[str, np.ndarray], delta: np.ndarray) -> "Warming2100":
        a0 = E.anomaly_at(years, forcing_path(forcing, i_now, 0.0), p, 2100)[:, 0]
        a1 = E.anomaly_at(years, forcing_path(forcing, i_now, 1.0), p, 2100)[:, 0]
        return cls(a0, a1 - a0, np.asarray(delta, float))

    def at(self, s: float) -> np.ndarray:
        """2100 warming of every draw on path ``s``."""
        return self.w0 + s * self.w1 + self.delta


@dataclass(frozen=True)
class PathDecision:
    """The chosen forcing path and its risk figures."""

    s_star: float
    feasible: bool
    p_exceed: float
    s_buffered: float
    buffered_feasible: bool
    n_draws: int
    at_upper_bound: bool


def decide(w: Warming2100, *, threshold: float, max_prob: float, bounds: tuple[float, float],
           seed: int) -> PathDecision:
    """Largest ``s`` in ``bounds`` with ``P(w(s) > threshold) <= max_prob`` over the draws.

    Exact for the sample: draw ``i`` exceeds the threshold iff ``s > s_i = (threshold - w0_i -
    delta_i) / w1_i`` (every ``w1_i > 0``: more forcing, more warming), so the largest admissible
    ``s`` is the ``(k+1)``-th smallest ``s_i`` with ``k = floor(max_prob n)``. The buffered
    counterpart ``bPOE(w(s) - threshold) <= max_prob`` (equivalently ``CVaR_{1-max_prob} <=
    threshold``; Rockafellar & Royset 2010) is solved as a linear program by
    :func:`vvuq_twin.decisions.solve`.
    """
    if np.any(w.w1 <= 0):
        raise ValueError("The forcing change must warm every draw (w1 > 0) for the exact solution.")
    n = w.w0.size
    s_i = np.sort((threshold - w.w0 - w.delta) / w.w1)
    k = int(np.floor(max_prob * n + 1e-12))
    lo, hi = bounds
    s_star = float(min(s_i[k], hi)) if k < n else float(hi)
    feasible = s_star >= lo
    at_upper = bool(feasible and s_star >= hi)
    s_star = s_star if feasible else float("nan")
    p = float(np.mean(w.at(s_star) > threshold)) if feasible else float("nan")
    xi = np.column_stack([w.w0 + w.delta - threshold, w.w1])
    dec = Decision(
        variables=[DecisionVariable("s", lower=lo, upper=hi)],
        loss=AffineInDecision(coef=lambda x: -np.ones((len(x), 1))),
        constraints=[BufferedConstraint(
            g=AffineInDecision(coef=lambda x: x[:, 1:2], offset=lambda x: x[:, 0]),
            epsilon=max_prob, name="bPOE(2100 warming > threshold)")],
    )
    try:
        res = solve(dec, xi, rng=seed)
        s_buf, buf_ok = float(res.decision.values[0]), True
    except InfeasibleDecisionError:  # no path meets the buffered constraint
        s_buf, buf_ok = float("nan"), False
    return PathDecision(s_star, bool(feasible), p, s_buf, buf_ok, int(n), at_upper)


# ------------------------------------------------------------------ 5: sensitivity
class _WarmingQoI:
    """2100 warming of one EBM parameter row (lam, gamma, C, C_d, kappa); picklable."""

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = np.asarray(weights, dtype=float)

    def __call__(self, row: np.ndarray) -> float:
        lam, gamma, C, C_d, kappa = (float(v) for v in row)
        g = E.impulse(self.weights.size, lam, gamma, C, C_d)
        return kappa * float(g @ self.weights)


def sensitivity_step(posterior: Any, years: np.ndarray, forcing: np.ndarray, *, n_var: int,
                     n_outer: int, n_inner: int, seed: int) -> tuple[Any, np.ndarray]:
    """Shapley effects of the 2100 EBM warming on ``forcing`` over the posterior parameters.

    Returns the effects Dataset and the QoI of every posterior draw (for checks).
    """
    space = PosteriorSpace.from_dataset(posterior, list(E.EBM_PARAMS))
    qoi = _WarmingQoI(E.warming_functional(years, forcing, 2100))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sh = shapley_effects(qoi, space, n_var=n_var, n_outer=n_outer, n_inner=n_inner, rng=seed)
    return sh, np.array([qoi(r) for r in space.draws])


# ------------------------------------------------------------------ 7: design (own candidate)
def reweight_utilities(h: np.ndarray, sd: float, *, qoi: np.ndarray | None, rng: Any,
                       n_draws: int | None = None) -> tuple[float, float, float]:
    """Utility of a Gaussian measurement ``z ~ N(h(theta), sd)`` from posterior draws of ``h``.

    The estimators of :func:`vvuq_twin.design.twin_design_utilities`, applied to a quantity the
    twin's ``predict`` does not produce: ``L_ij = log N(z_i; h_j, sd)`` with ``z_i`` simulated
    from draw ``i``; with ``qoi=None`` the prior-contrastive EIG about all parameters,
    ``u_i = L_ii - log mean_j exp(L_ij)``; with a QoI per draw the Gaussian entropy reduction
    ``u_i = 0.5 log(Var(q) / Var_{w_i}(q))`` with self-normalised weights ``w_ij ~ exp(L_ij)``.

    Returns
    -------
    (utility, standard error, 5% quantile of the weights' ESS)
    """
    gen = np.random.default_rng(rng)
    h = np.asarray(h, dtype=float).reshape(-1)
    n_total = h.size
    n_use = min(n_total, 2000) if n_draws is None else int(n_draws)
    idx = np.sort(gen.choice(n_total, size=n_use, replace=False)) if n_use < n_total else np.arange(n_total)
    h = h[idx]
    z = h + sd * gen.standard_normal(n_use)
    L = stats.norm.logpdf(z[:, None], loc=h[None, :], scale=sd)
    q = None if qoi is None else np.asarray(qoi, dtype=float).reshape(-1)[idx]
    u, ess_q05 = preposterior_utility(L, qoi=q)  # the estimators of twin_design_utilities
    return float(np.mean(u)), float(np.std(u, ddof=1) / np.sqrt(n_use)), ess_q05


# ------------------------------------------------------------------ 8: assimilation
def numpy_prior(twin: Any) -> Any:
    """Log prior density of the twin's free variables (natural scale), vectorised over particles.

    The declaration's own answer (:meth:`vvuq_twin.Twin.log_prior`: parameters, HSGP
    discrepancy ``ls``/``eta`` and basis coefficients, observation noise); the tests check it
    against the twin's compiled prior (:func:`vvuq_twin.assimilation.twin_log_density`).
    """

    def log_prior(theta: Mapping[str, np.ndarray]) -> np.ndarray:
        lp = twin.log_prior(theta)
        return np.where(np.isfinite(lp), lp, -np.inf)

    return log_prior


def assimilate_years(posterior: Any, lik: E.TwinLikelihood, log_prior: Any, past: Mapping[str, np.ndarray],
                     new: Mapping[str, np.ndarray], *, seed: int, n_mcmc_steps: int = 10) -> tuple[ParticlePosterior, Any]:
    """Assimilate new annual anomalies into the calibrated posterior by SMC.

    The posterior draws become equally weighted particles carrying their log-likelihood of the
    calibration record; :func:`vvuq_twin.assimilation.smc_update` reweights them by the new
    years (tempered if needed), resamples and moves them with the exact likelihood of all data.
    """
    vals = E.draws_dict(posterior, __getattr__("FREE_VARS"))  # noqa: F821 - module __getattr__
    particles = ParticlePosterior(vals, None, lik(vals, past))
    return smc_update(particles, dict(new), lik, log_prior, past_data=[dict(past)],
                      n_mcmc_steps=n_mcmc_steps, rng=seed)


# ------------------------------------------------------------------ 9: replicate
def replicate_worlds(result: Any, simulator_for: Any, forcings: Mapping[str, np.ndarray], *,
                     year: int, seed: int) -> Any:
    """The calibrated twin in each forcing world, via :func:`vvuq_twin.operations.replicate`.

    ``simulator_for(forcing)`` returns the twin's simulator driven by that forcing from 1750;
    each world keeps the parameterisation (the posterior draws are reused) and predicts the EBM
    anomaly ``eta`` at ``year``.
    """
    worlds = {name: Scenario(modify=lambda t, f=f: dataclasses.replace(t, simulator=simulator_for(f)))
              for name, f in forcings.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return replicate(result, worlds, x_new=np.array([[float(year)]]), rng=seed, include_y=False)

