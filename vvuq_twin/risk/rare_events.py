"""Rare-event probabilities ``P(g(theta) <= 0)``: subset simulation, importance sampling, FORM.

All methods work in standard-normal space ``u ~ N(0, I_dim)``; a ``transform`` maps ``u`` to the
physical inputs ``theta`` (e.g. ``lambda u: dist.ppf(norm.cdf(u))`` for independent marginals,
or a Nataf/Rosenblatt map). Every limit-state evaluation goes through
:func:`vvuq_twin.ensembles.evaluate`, so a :class:`concurrent.futures.Executor` (process pool,
Dask) can run them; failed or non-finite evaluations raise
:class:`~vvuq_twin.exceptions.SimulatorError` (a rare-event estimate cannot silently drop runs).
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import xarray as xr
from scipy import stats

from .._rng import RNGLike, as_generator, seed_int
from ..ensembles import evaluate
from ..exceptions import EnsembleError, SimulatorError
from .errors import RareEventError, RiskInputError

__all__ = ["RareEventResult", "FormResult", "form", "subset_simulation", "importance_sampling"]


@dataclass(frozen=True)
class RareEventResult:
    """A rare-event failure-probability estimate.

    Attributes
    ----------
    method : str
        ``"subset_simulation"``, ``"importance_sampling/cross_entropy"`` or
        ``"importance_sampling/form"``.
    pf : float
        Estimated ``P(g <= 0)``.
    cov : float
        Estimated coefficient of variation of ``pf`` (``se / pf``).
    ci_low, ci_high : float
        Interval ``pf * exp(-/+ z s)`` with ``s = sqrt(log(1 + cov^2))`` (log-normal approximation).
    n_evaluations : int
        Limit-state evaluations used (including retries and all adaptive stages).
    seed : int
        Seed drawn from ``rng`` that fixed all random numbers of this run.
    details : dict
        Method-specific diagnostics (levels, thresholds, acceptance rates, CE iterations, ...).
    """

    method: str
    pf: float
    cov: float
    ci_low: float
    ci_high: float
    n_evaluations: int
    seed: int
    confidence: float = 0.95
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def se(self) -> float:
        """Standard error ``cov * pf``."""
        return self.cov * self.pf

    @property
    def beta(self) -> float:
        """Generalised reliability index ``-Phi^{-1}(pf)``."""
        return float(-stats.norm.ppf(self.pf)) if self.pf > 0 else math.inf

    def to_xarray(self) -> xr.Dataset:
        """NetCDF-saveable Dataset of the estimate and per-stage diagnostics."""
        data: dict[str, Any] = {
            "pf": self.pf,
            "cov": self.cov,
            "se": self.se,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_evaluations": self.n_evaluations,
        }
        stages = {k: v for k, v in self.details.items() if isinstance(v, (list, np.ndarray))}
        for k, v in stages.items():
            dim = _STAGE_DIMS.get(k, f"{k}_index")
            data[k] = (dim, np.asarray(v, dtype=float))
        scalars = {k: v for k, v in self.details.items() if isinstance(v, (int, float, str))}
        attrs = {"method": self.method, "seed": self.seed, "confidence": self.confidence}
        attrs.update(scalars)
        return xr.Dataset(data, attrs=attrs)


_STAGE_DIMS = {
    "thresholds": "level",
    "conditional_probabilities": "level",
    "level_cov": "level",
    "gamma": "level",
    "acceptance_rate": "level",
    "ce_levels": "ce_iteration",
    "biasing_mean": "u_dim",
}


@dataclass(frozen=True)
class FormResult:
    """First-order reliability method result (HL-RF iteration).

    Attributes
    ----------
    beta : float
        Reliability index ``|u*|`` (negative when ``g(0) <= 0``).
    design_point : ndarray
        Most probable failure point ``u*`` in standard-normal space.
    pf : float
        FORM approximation ``Phi(-beta)`` (exact for a linear limit state).
    n_evaluations : int
        Limit-state evaluations (finite-difference gradients included).
    converged : bool
        Whether the iteration met its tolerance.
    n_iterations : int
    """

    beta: float
    design_point: np.ndarray
    pf: float
    n_evaluations: int
    converged: bool
    n_iterations: int


class _InStandardSpace:
    """Picklable composition ``g(transform(u))``."""

    def __init__(self, g: Callable[[np.ndarray], Any], transform: Callable[[np.ndarray], Any] | None):
        self.g = g
        self.transform = transform

    def __call__(self, u: np.ndarray) -> Any:
        theta = u if self.transform is None else self.transform(u)
        return self.g(np.asarray(theta, dtype=float))


class _Counter:
    def __init__(self, fn: _InStandardSpace, executor: Executor | None, retries: int):
        self.fn, self.executor, self.retries, self.n = fn, executor, retries, 0

    def __call__(self, U: np.ndarray) -> np.ndarray:
        if U.shape[0] == 0:
            return np.empty(0)
        try:
            res = evaluate(self.fn, U, executor=self.executor, retries=self.retries,
                           on_failure="raise")
        except EnsembleError as exc:
            raise SimulatorError(f"The limit state failed during rare-event estimation: {exc}") from exc
        self.n += res.n_runs
        out = res.outputs
        if out.ndim > 1:
            if int(np.prod(out.shape[1:])) != 1:
                raise SimulatorError(
                    f"The limit state must return one scalar per input; got output shape "
                    f"{out.shape[1:]} per row."
                )
            out = out.reshape(out.shape[0])
        bad = ~np.isfinite(out)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SimulatorError(
                f"The limit state returned {int(bad.sum())} non-finite value(s), e.g. {out[i]!r} "
                f"at u={U[i].tolist()}; rare-event estimates need a finite g everywhere."
            )
        return out


def _check_common(dim: int, confidence: float, func: str) -> None:
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise RiskInputError(f"The 'dim' parameter of {func} must be a positive integer; got {dim!r}.")
    if not 0 < confidence < 1:
        raise RiskInputError(f"The 'confidence' parameter of {func} must be in (0, 1); got {confidence!r}.")


def _lognormal_ci(pf: float, cov: float, confidence: float) -> tuple[float, float]:
    if not (pf > 0 and math.isfinite(cov)):
        return 0.0, math.nan if pf == 0 else math.inf
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    s = math.sqrt(math.log1p(cov**2))
    return pf * math.exp(-z * s), pf * math.exp(z * s)


def form(
    limit_state: Callable[[np.ndarray], float],
    dim: int,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    max_iterations: int = 50,
    tol: float = 1e-6,
    step: float = 1e-4,
    executor: Executor | None = None,
    retries: int = 0,
) -> FormResult:
    """Find the design point by the Hasofer--Lind--Rackwitz--Fiessler iteration.

    Gradients are forward finite differences (``dim + 1`` evaluations per iteration, one
    :func:`~vvuq_twin.ensembles.evaluate` call each).

    Parameters
    ----------
    limit_state : callable
        ``g(theta) -> float``; failure when ``g <= 0``. Picklable for process executors.
    dim : int
        Dimension of the standard-normal space.
    transform : callable, optional
        Map from ``u`` to ``theta``.
    max_iterations, tol, step : int, float, float
        Iteration limit, convergence tolerance on ``|u_{k+1} - u_k|``, finite-difference step.
    executor : Executor, optional
        Where the limit state runs.
    retries : int
        Retries of failed evaluations.

    Returns
    -------
    FormResult
    """
    _check_common(dim, 0.95, "form")
    g = _Counter(_InStandardSpace(limit_state, transform), executor, retries)
    u = np.zeros(dim)
    converged = False
    sign = 1.0
    it = 0
    for it in range(1, max_iterations + 1):
        pts = np.vstack([u, u + step * np.eye(dim)])
        vals = g(pts)
        g0, grad = vals[0], (vals[1:] - vals[0]) / step
        if it == 1:
            sign = 1.0 if g0 > 0 else -1.0
        gn = float(np.dot(grad, grad))
        if gn == 0.0:
            raise RareEventError(
                f"form: the limit-state gradient vanished at u={u.tolist()}; FORM needs a "
                "limit state that varies with its inputs (try subset_simulation)."
            )
        u_new = (np.dot(grad, u) - g0) / gn * grad
        if np.linalg.norm(u_new - u) < tol * max(1.0, np.linalg.norm(u_new)):
            u = u_new
            converged = True
            break
        u = u_new
    beta = sign * float(np.linalg.norm(u))
    return FormResult(beta, u, float(stats.norm.cdf(-beta)), g.n, converged, it)


def _chain_gamma(ind: np.ndarray) -> float:
    """Au & Beck (2001) correlation factor of level indicators arranged ``(n_chains, n_steps)``."""
    nc, ns = ind.shape
    p = ind.mean()
    r0 = p * (1 - p)
    if r0 <= 0 or ns < 2:
        return 0.0
    gamma = 0.0
    for tau in range(1, ns):
        r = np.sum(ind[:, : ns - tau] * ind[:, tau:]) / (nc * (ns - tau)) - p**2
        gamma += 2 * (1 - tau / ns) * r / r0
    return float(max(gamma, 0.0))


def _mma_level(
    g: _Counter, seeds_u: np.ndarray, seeds_g: np.ndarray, b: float, n_steps: int,
    proposal_std: float, gen: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Modified Metropolis (Au & Beck 2001): component-wise moves, then the ``g <= b`` check."""
    n_chains, dim = seeds_u.shape
    cur_u, cur_g = seeds_u.copy(), seeds_g.copy()
    states = np.empty((n_chains, n_steps, dim))
    gvals = np.empty((n_chains, n_steps))
    states[:, 0], gvals[:, 0] = cur_u, cur_g
    n_acc = 0
    for step in range(1, n_steps):
        xi = cur_u + proposal_std * gen.standard_normal(cur_u.shape)
        log_ratio = -0.5 * (xi**2 - cur_u**2)
        accept_comp = np.log(gen.random(cur_u.shape)) < log_ratio
        cand = np.where(accept_comp, xi, cur_u)
        moved = accept_comp.any(axis=1)
        g_cand = cur_g.copy()
        if moved.any():
            g_cand[moved] = g(cand[moved])
        ok = moved & (g_cand <= b)
        cur_u = np.where(ok[:, None], cand, cur_u)
        cur_g = np.where(ok, g_cand, cur_g)
        n_acc += int(ok.sum())
        states[:, step], gvals[:, step] = cur_u, cur_g
    return states, gvals, n_acc / (n_chains * (n_steps - 1))


def _acs_level(
    g: _Counter, seeds_u: np.ndarray, seeds_g: np.ndarray, b: float, n_steps: int, lam: float,
    gen: np.random.Generator, n_groups: int = 10, target: float = 0.44,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Adaptive conditional sampling (Papaioannou et al. 2015).

    Candidates ``rho u + sigma eps`` leave ``N(0, I)`` invariant; ``sigma_i = min(lam s_i, 1)``
    with ``s_i`` the seeds' standard deviation, and ``lam`` is adapted after each group of
    chains towards the target acceptance rate 0.44.
    """
    n_chains, dim = seeds_u.shape
    perm = gen.permutation(n_chains)
    seeds_u, seeds_g = seeds_u[perm], seeds_g[perm]
    s = np.std(seeds_u, axis=0, ddof=1) if n_chains > 1 else np.ones(dim)
    states = np.empty((n_chains, n_steps, dim))
    gvals = np.empty((n_chains, n_steps))
    states[:, 0], gvals[:, 0] = seeds_u, seeds_g
    groups = np.array_split(np.arange(n_chains), min(n_groups, n_chains))
    n_acc_total = 0
    for i, idx in enumerate(groups, start=1):
        sigma = np.minimum(lam * s, 1.0)
        rho = np.sqrt(1 - sigma**2)
        cur_u, cur_g = seeds_u[idx].copy(), seeds_g[idx].copy()
        n_acc = 0
        for step in range(1, n_steps):
            cand = rho * cur_u + sigma * gen.standard_normal(cur_u.shape)
            g_cand = g(cand)
            ok = g_cand <= b
            cur_u = np.where(ok[:, None], cand, cur_u)
            cur_g = np.where(ok, g_cand, cur_g)
            n_acc += int(ok.sum())
            states[idx, step], gvals[idx, step] = cur_u, cur_g
        rate = n_acc / (idx.size * (n_steps - 1))
        n_acc_total += n_acc
        lam = float(np.exp(np.log(lam) + (rate - target) / np.sqrt(i)))
    return states, gvals, n_acc_total / (n_chains * (n_steps - 1)), lam


def subset_simulation(
    limit_state: Callable[[np.ndarray], float],
    dim: int,
    *,
    n_per_level: int = 2000,
    p0: float = 0.1,
    max_levels: int = 20,
    sampler: Literal["mma", "acs"] = "mma",
    proposal_std: float = 1.0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    executor: Executor | None = None,
    retries: int = 0,
    confidence: float = 0.95,
    rng: RNGLike = None,
) -> RareEventResult:
    """Estimate ``P(g <= 0)`` by subset simulation with the modified Metropolis algorithm.

    Au & Beck (2001): intermediate thresholds are the ``p0``-quantiles of ``g``; each level
    grows ``n_per_level * p0`` Markov chains of length ``1/p0`` from the seeds below the
    threshold with component-wise (modified) Metropolis moves under ``N(0, 1)`` marginals
    (Gaussian proposal, std ``proposal_std``). All chains advance together, so each step is one
    :func:`~vvuq_twin.ensembles.evaluate` call over the moved chains. ``sampler="acs"`` uses
    adaptive conditional sampling instead (Papaioannou et al. 2015), which mixes better in
    high dimension.

    The coefficient of variation is Au & Beck's ``delta^2 = sum_k (1 - p_k)/(p_k N)(1 + gamma_k)``
    with ``gamma_k`` the within-chain correlation factor of level ``k``. It assumes the level
    estimates are uncorrelated and so understates the true CoV (by about 20-30% on the linear
    test problem); ``details["cov_upper"] = sum_k delta_k`` is Au & Beck's fully-correlated
    upper bound. The observed spread lies between the two; ``ci_low``/``ci_high`` use the
    conservative ``cov_upper``.

    Parameters
    ----------
    limit_state : callable
        ``g(theta) -> float``; failure when ``g <= 0``.
    dim : int
        Dimension of the standard-normal space.
    n_per_level : int
        Samples per level ``N``; ``N p0`` and ``1/p0`` must be integers.
    p0 : float
        Level probability in (0, 0.5].
    max_levels : int
        Stop with :class:`~vvuq_twin.risk.RareEventError` after this many levels.
    sampler : {"mma", "acs"}
        Modified Metropolis or adaptive conditional sampling.
    proposal_std : float
        Standard deviation of the component-wise proposal (``"mma"`` only).
    transform : callable, optional
        Map from ``u`` to ``theta``.
    executor : Executor, optional
        Where the limit state runs.
    retries : int
        Retries of failed evaluations.
    confidence : float
        Level of the reported interval.
    rng : Generator, int or None
        Random source.

    Returns
    -------
    RareEventResult
    """
    func = "subset_simulation"
    _check_common(dim, confidence, func)
    if not 0 < p0 <= 0.5:
        raise RiskInputError(f"The 'p0' parameter of {func} must be in (0, 0.5]; got {p0!r}.")
    n_chains = int(round(n_per_level * p0))
    n_steps = int(round(1 / p0))
    if n_chains < 1 or n_chains * n_steps != n_per_level or abs(n_chains - n_per_level * p0) > 1e-9:
        raise RiskInputError(
            f"{func}: n_per_level * p0 and 1 / p0 must be integers with product n_per_level; got "
            f"n_per_level={n_per_level}, p0={p0}. E.g. n_per_level=2000, p0=0.1."
        )
    if sampler not in ("mma", "acs"):
        raise RiskInputError(f"The 'sampler' parameter of {func} must be 'mma' or 'acs'; got {sampler!r}.")
    lam = 0.6
    if proposal_std <= 0:
        raise RiskInputError(f"The 'proposal_std' parameter of {func} must be positive; got {proposal_std!r}.")
    seed = seed_int(rng)
    gen = as_generator(seed)
    g = _Counter(_InStandardSpace(limit_state, transform), executor, retries)

    U = gen.standard_normal((n_per_level, dim))
    G = g(U)
    chain_G: np.ndarray | None = None  # (n_chains, n_steps) of the current level, None at level 0
    thresholds: list[float] = []
    cond_probs: list[float] = []
    deltas: list[float] = []
    gammas: list[float] = []
    acceptance: list[float] = []
    for level in range(max_levels + 1):
        order = np.argsort(G, kind="stable")
        b = 0.5 * (G[order[n_chains - 1]] + G[order[n_chains]])
        final = b <= 0
        if final:
            p_k = float(np.mean(G <= 0))
            ind_thr = 0.0
        else:
            p_k = n_chains / n_per_level
            ind_thr = b
        gamma = 0.0 if chain_G is None else _chain_gamma((chain_G <= ind_thr).astype(float))
        if p_k > 0:
            deltas.append(math.sqrt((1 - p_k) / (p_k * n_per_level) * (1 + gamma)))
        else:
            deltas.append(math.inf)
        gammas.append(gamma)
        cond_probs.append(p_k)
        thresholds.append(0.0 if final else float(b))
        if final:
            break
        if level == max_levels:
            raise RareEventError(
                f"{func}: the failure domain g <= 0 was not reached after {max_levels} levels "
                f"(last threshold {b:.4g}); P_f is below about {p0 ** max_levels:.2e}. Increase "
                "max_levels, or check the sign convention (failure is g <= 0)."
            )
        seeds = order[:n_chains]
        if sampler == "mma":
            states, gvals, acc = _mma_level(g, U[seeds], G[seeds], b, n_steps, proposal_std, gen)
        else:
            states, gvals, acc, lam = _acs_level(g, U[seeds], G[seeds], b, n_steps, lam, gen)
        acceptance.append(acc)
        U, G = states.reshape(n_per_level, dim), gvals.reshape(n_per_level)
        chain_G = gvals
    pf = float(np.prod(cond_probs))
    cov = float(math.sqrt(sum(d**2 for d in deltas))) if pf > 0 else math.inf
    cov_upper = float(sum(deltas)) if pf > 0 else math.inf
    # the interval uses the conservative (fully correlated levels) CoV
    lo, hi = _lognormal_ci(pf, cov_upper, confidence)
    details = {
        "thresholds": thresholds,
        "conditional_probabilities": cond_probs,
        "level_cov": deltas,
        "cov_upper": cov_upper,
        "gamma": gammas,
        "acceptance_rate": acceptance + [math.nan],
        "n_levels": len(cond_probs),
        "n_per_level": n_per_level,
        "p0": p0,
        "sampler": sampler,
    }
    return RareEventResult("subset_simulation", pf, cov, lo, hi, g.n, seed, confidence, details)


def _log_phi(U: np.ndarray) -> np.ndarray:
    return -0.5 * np.sum(U**2, axis=1) - 0.5 * U.shape[1] * math.log(2 * math.pi)


def importance_sampling(
    limit_state: Callable[[np.ndarray], float],
    dim: int,
    *,
    method: Literal["cross_entropy", "form"] = "cross_entropy",
    n_samples: int = 2000,
    n_per_iteration: int = 1000,
    rho: float = 0.1,
    max_iterations: int = 20,
    covariance: Literal["identity", "full"] = "identity",
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    executor: Executor | None = None,
    retries: int = 0,
    confidence: float = 0.95,
    rng: RNGLike = None,
) -> RareEventResult:
    """Estimate ``P(g <= 0)`` by importance sampling with a Gaussian biasing density.

    ``method="cross_entropy"``: the multilevel cross-entropy method (Rubinstein; Kurtz & Song
    2013) fits ``N(mu, Sigma)`` to the failure domain: each iteration draws ``n_per_iteration``
    samples, sets the level to the ``rho``-quantile of ``g`` (or 0), and refits mean (and, for
    ``covariance="full"``, at the last step, covariance) to the likelihood-ratio-weighted elite
    samples.
    ``method="form"``: centre ``N(u*, I)`` at the FORM design point (Melchers).
    A final independent sample of ``n_samples`` from the biasing density gives
    ``pf = mean(1{g <= 0} phi(u)/h(u))`` and ``cov = sd / (sqrt(n) pf)``.

    Parameters
    ----------
    limit_state : callable
        ``g(theta) -> float``; failure when ``g <= 0``.
    dim : int
        Dimension of the standard-normal space.
    method : {"cross_entropy", "form"}
        How the biasing density is found.
    n_samples : int
        Size of the final importance sample.
    n_per_iteration, rho, max_iterations : int, float, int
        Cross-entropy settings.
    covariance : {"identity", "full"}
        Cross-entropy family: mean shift only, or mean and full covariance.
    transform, executor, retries, confidence, rng
        As in :func:`subset_simulation`.

    Returns
    -------
    RareEventResult
    """
    func = "importance_sampling"
    _check_common(dim, confidence, func)
    if method not in ("cross_entropy", "form"):
        raise RiskInputError(f"The 'method' parameter of {func} must be 'cross_entropy' or 'form'; got {method!r}.")
    if covariance not in ("identity", "full"):
        raise RiskInputError(f"The 'covariance' parameter of {func} must be 'identity' or 'full'; got {covariance!r}.")
    if not 0 < rho < 1:
        raise RiskInputError(f"The 'rho' parameter of {func} must be in (0, 1); got {rho!r}.")
    if n_samples < 2 or n_per_iteration < 10:
        raise RiskInputError(
            f"{func}: need n_samples >= 2 and n_per_iteration >= 10; got {n_samples}, {n_per_iteration}."
        )
    seed = seed_int(rng)
    gen = as_generator(seed)
    g = _Counter(_InStandardSpace(limit_state, transform), executor, retries)
    mu = np.zeros(dim)
    chol = np.eye(dim)
    details: dict[str, Any] = {}
    if method == "form":
        fr = form(limit_state, dim, transform=transform, executor=executor, retries=retries)
        mu = fr.design_point
        details.update(form_beta=fr.beta, form_evaluations=fr.n_evaluations,
                       form_converged=int(fr.converged))
        n_pre = fr.n_evaluations
    else:
        levels: list[float] = []
        converged = False
        for _ in range(max_iterations):
            U = mu + gen.standard_normal((n_per_iteration, dim)) @ chol.T
            G = g(U)
            gamma = max(float(np.quantile(G, rho)), 0.0)
            levels.append(gamma)
            elite = G <= gamma
            logw = _log_phi(U) - _log_h(U, mu, chol)
            logw_e = logw[elite]
            w = np.exp(logw_e - logw_e.max())
            w /= w.sum()
            Ue = U[elite]
            mu = w @ Ue
            # the covariance is refitted only on the final (failure) elite set: fitting it to
            # intermediate elites shrinks the density and stalls the level sequence
            if covariance == "full" and gamma == 0.0:
                C = (Ue - mu).T @ ((Ue - mu) * w[:, None]) + 1e-6 * np.eye(dim)
                try:
                    chol = np.linalg.cholesky(C)
                except np.linalg.LinAlgError:
                    chol = np.eye(dim)
            if gamma == 0.0:
                converged = True
                break
        if not converged:
            raise RareEventError(
                f"{func}: cross-entropy did not reach the failure domain in {max_iterations} "
                f"iterations (last level {levels[-1]:.4g}); increase max_iterations or "
                "n_per_iteration, or check the sign convention (failure is g <= 0)."
            )
        details.update(ce_levels=levels, ce_iterations=len(levels))
        n_pre = g.n
    U = mu + gen.standard_normal((n_samples, dim)) @ chol.T
    G = g(U)
    logw = _log_phi(U) - _log_h(U, mu, chol)
    terms = np.where(G <= 0, np.exp(logw), 0.0)
    pf = float(terms.mean())
    cov = float(terms.std(ddof=1) / (math.sqrt(n_samples) * pf)) if pf > 0 else math.inf
    lo, hi = _lognormal_ci(pf, cov, confidence)
    details.update(
        n_adaptation_evaluations=int(n_pre),
        n_final_samples=n_samples,
        biasing_mean=list(map(float, mu)),
        n_failures_final=int((G <= 0).sum()),
        weight_ess=float(terms.sum() ** 2 / np.sum(terms**2)) if pf > 0 else 0.0,
    )
    name = f"importance_sampling/{method}"
    total = g.n + (n_pre if method == "form" else 0)
    return RareEventResult(name, pf, cov, lo, hi, int(total), seed, confidence, details)


def _log_h(U: np.ndarray, mu: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """Log density of ``N(mu, chol chol^T)`` at the rows of ``U``."""
    Z = np.linalg.solve(chol, (U - mu).T).T
    logdet = 2 * np.sum(np.log(np.abs(np.diag(chol))))
    return -0.5 * np.sum(Z**2, axis=1) - 0.5 * logdet - 0.5 * U.shape[1] * math.log(2 * math.pi)

