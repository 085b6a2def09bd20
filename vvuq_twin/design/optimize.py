"""Choosing designs: discrete candidate sets (exhaustive and greedy batch selection) and
continuous designs by Bayesian optimisation of a noisy utility with botorch.

The optimisers see only the utility (:func:`~vvuq_twin.design.utility` or
:func:`~vvuq_twin.design.eig_candidates`); continuous optimisation models the noisy utility
estimates with a :class:`botorch.models.SingleTaskGP` whose observation noise is each estimate's
squared standard error, and proposes batches with ``qLogNoisyExpectedImprovement`` through
:func:`botorch.optim.optimize_acqf`.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from typing import Any

import numpy as np
import torch
import xarray as xr

from .._rng import RNGLike, as_generator, seed_int, spawn_seeds
from .estimators import _check_budget, eig_candidates
from .goal import utility
from .problem import BudgetError, DecisionLoss, DesignError, DesignProblem, torch_seed

__all__ = ["select_exhaustive", "select_greedy", "optimize_design", "candidate_utilities"]


def candidate_utilities(problem: DesignProblem, designs: Any, *, method: str = "auto", rng: RNGLike = None,
                        **budget: Any) -> tuple[np.ndarray, np.ndarray]:
    """Utility estimate and standard error of each design in ``designs`` ``(B, n_obs, d)``.

    Vectorised for the closed form, nested MC and PCE; other estimators (and EVSI) are looped
    with one shared seed (common random numbers)."""
    X = problem.check_design(designs, batch=True)
    if not isinstance(problem.target, DecisionLoss) and method in ("auto", "closed_form", "nmc", "pce"):
        ds = eig_candidates(problem, X, method=method, rng=seed_int(rng), **budget)
        return ds["utility"].values, ds["se"].values
    seed = seed_int(rng)
    res = [utility(problem, X[i], method=method, rng=seed, **budget) for i in range(X.shape[0])]
    return np.array([r.estimate for r in res]), np.array([r.se for r in res])


def _check_candidates(problem: DesignProblem, candidates: Any) -> torch.Tensor:
    C = problem.check_design(candidates)  # (n_candidates, d) -- one measurement per candidate
    if C.shape[0] < 1:
        raise DesignError("The candidate set is empty.")
    return C


def select_exhaustive(problem: DesignProblem, candidates: Any, n_select: int, *, replacement: bool = True,
                      method: str = "auto", max_combinations: int = 500_000, chunk: int = 50_000,
                      rng: RNGLike = None, **budget: Any) -> xr.Dataset:
    """Best batch of ``n_select`` measurements from ``candidates`` by exhaustive search.

    Parameters
    ----------
    problem : DesignProblem
    candidates : array_like, shape (n_candidates, design_dim)
        Possible single measurements (e.g. sensor locations).
    n_select : int
        Batch size.
    replacement : bool
        Whether a candidate may be chosen more than once (replicates; needed for exact
        weights such as the D-optimal 1/3).
    method : str
        Utility estimator (see :func:`candidate_utilities`).
    max_combinations : int
        Refuse larger searches (use :func:`select_greedy`).
    rng : Generator, int or None
        One seed shared by all batches (common random numbers).

    Returns
    -------
    xarray.Dataset
        ``design (obs, design_dim)``, ``candidate_index (obs)``, ``weight (candidate)``,
        ``utility``, ``se`` and ``n_combinations``.
    """
    t0 = time.perf_counter()
    C = _check_candidates(problem, candidates)
    n_select = _check_budget("n_select", n_select, 1, "a batch has at least one measurement")
    nc = C.shape[0]
    total = math.comb(nc + n_select - 1, n_select) if replacement else math.comb(nc, n_select)
    if total == 0:
        raise DesignError(f"Cannot choose {n_select} distinct candidates from {nc}; allow replacement.")
    if total > max_combinations:
        raise BudgetError(
            f"Exhaustive selection of {n_select} from {nc} candidates needs {total} utility evaluations "
            f"(> max_combinations={max_combinations}); use select_greedy or raise max_combinations.")
    gen = itertools.combinations_with_replacement(range(nc), n_select) if replacement else \
        itertools.combinations(range(nc), n_select)
    seed = seed_int(rng)
    best_u, best_se, best_idx = -np.inf, np.nan, None
    while True:
        block = list(itertools.islice(gen, chunk))
        if not block:
            break
        idx = torch.tensor(block, device=C.device)
        u, se = candidate_utilities(problem, C[idx], method=method, rng=seed, **budget)
        j = int(np.nanargmax(u))
        if u[j] > best_u:
            best_u, best_se, best_idx = float(u[j]), float(se[j]), block[j]
    return _selection_dataset(problem, C, list(best_idx), best_u, best_se,
                              {"strategy": "exhaustive", "n_combinations": total, "replacement": int(replacement),
                               "method": method, "wall_time": time.perf_counter() - t0})


def _selection_dataset(problem, C, idx, u, se, attrs, extra=None) -> xr.Dataset:
    Cn = C.cpu().numpy()
    counts = np.bincount(np.asarray(idx), minlength=Cn.shape[0])
    ds = xr.Dataset(
        {"design": (("obs", "design_dim"), Cn[idx]), "candidate_index": ("obs", np.asarray(idx)),
         "weight": ("candidate", counts / len(idx)), "candidates": (("candidate", "design_dim"), Cn),
         "utility": u, "se": se},
        coords={"obs": np.arange(len(idx)), "candidate": np.arange(Cn.shape[0]),
                "design_dim": list(problem.design_names)},
        attrs={**attrs, "target": problem.target.kind},
    )
    if extra:
        ds = ds.assign(extra)
    return ds


def select_greedy(problem: DesignProblem, candidates: Any, n_select: int, *, replacement: bool = True,
                  initial: Any = None, method: str = "auto", rng: RNGLike = None, **budget: Any) -> xr.Dataset:
    """Greedy batch selection: add, one at a time, the candidate that most increases the utility of
    the batch so far (near-optimal for submodular utilities such as the EIG, Krause et al. 2008).

    Parameters as in :func:`select_exhaustive`; ``initial`` is an optional fixed part of the
    design ``(n0, design_dim)`` (e.g. measurements already taken). Each step uses its own child
    seed shared by all candidates of the step.

    Returns
    -------
    xarray.Dataset
        As :func:`select_exhaustive`, plus ``step_utility (step)`` and
        ``candidate_utility (step, candidate)``.
    """
    t0 = time.perf_counter()
    C = _check_candidates(problem, candidates)
    n_select = _check_budget("n_select", n_select, 1, "a batch has at least one measurement")
    if not replacement and n_select > C.shape[0]:
        raise DesignError(f"Cannot choose {n_select} distinct candidates from {C.shape[0]}; allow replacement.")
    base = problem.check_design(initial) if initial is not None else C[:0]
    seeds = spawn_seeds(rng, n_select)
    chosen: list[int] = []
    path, cand_u, cand_se = [], [], []
    for k in range(n_select):
        allowed = [i for i in range(C.shape[0]) if replacement or i not in chosen]
        cur = torch.cat([base, C[chosen]], 0) if chosen else base
        batch = torch.stack([torch.cat([cur, C[i:i + 1]], 0) for i in allowed])
        u, se = candidate_utilities(problem, batch, method=method, rng=seeds[k], **budget)
        full = np.full(C.shape[0], np.nan)
        full_se = np.full(C.shape[0], np.nan)
        full[allowed], full_se[allowed] = u, se
        j = int(np.nanargmax(full))
        chosen.append(j)
        path.append(full[j])
        cand_u.append(full)
        cand_se.append(full_se)
    extra = {"step_utility": ("step", np.array(path)),
             "candidate_utility": (("step", "candidate"), np.array(cand_u)),
             "candidate_se": (("step", "candidate"), np.array(cand_se))}
    ds = _selection_dataset(problem, C, chosen, float(path[-1]), float(cand_se[-1][chosen[-1]]),
                            {"strategy": "greedy", "replacement": int(replacement), "method": method,
                             "wall_time": time.perf_counter() - t0}, extra)
    return ds.assign_coords(step=np.arange(n_select))


def optimize_design(problem: DesignProblem, n_obs: int = 1, *, method: str = "auto", n_initial: int = 8,
                    n_iterations: int = 10, q: int = 2, num_restarts: int = 4, raw_samples: int = 256,
                    rng: RNGLike = None, **budget: Any) -> xr.Dataset:
    """Optimise a continuous design of ``n_obs`` measurements by Bayesian optimisation of the noisy
    utility.

    The utility estimates (with standard errors) are modelled by a ``SingleTaskGP`` with fixed,
    heteroscedastic noise ``se²``; batches of ``q`` designs are proposed by
    ``qLogNoisyExpectedImprovement`` and ``optimize_acqf``. The recommended design is the
    evaluated design with the highest GP posterior mean (noise-aware), not the highest noisy
    estimate.

    Parameters
    ----------
    problem : DesignProblem
    n_obs : int
        Measurements per design (the search space has ``n_obs * design_dim`` dimensions).
    method : str
        Utility estimator for :func:`~vvuq_twin.design.utility`.
    n_initial, n_iterations, q : int
        Uniform random initial designs, BO rounds, designs per round.
    num_restarts, raw_samples : int
        Passed to ``optimize_acqf``.
    rng : Generator, int or None
    **budget
        Budget keywords of the utility estimator.

    Returns
    -------
    xarray.Dataset
        ``design (evaluation, obs, design_dim)``, ``utility``, ``se``, ``round (evaluation)``,
        ``best_design (obs, design_dim)``, ``best_utility`` (GP mean) and ``best_estimate``.
    """
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler
    from gpytorch.mlls import ExactMarginalLogLikelihood

    t0 = time.perf_counter()
    n_obs = _check_budget("n_obs", n_obs, 1, "a design has at least one measurement")
    n_initial = _check_budget("n_initial", n_initial, 2, "the GP needs at least two initial designs")
    n_iterations = _check_budget("n_iterations", n_iterations, 0, "non-negative")
    q = _check_budget("q", q, 1, "at least one design per round")
    g = as_generator(rng)
    d = problem.design_dim
    lo = problem.bounds[0].repeat(n_obs).cpu().double()
    hi = problem.bounds[1].repeat(n_obs).cpu().double()

    def to_design(u: torch.Tensor) -> np.ndarray:
        x = lo + u.double() * (hi - lo)
        return x.reshape(n_obs, d).clamp(problem.bounds[0].cpu(), problem.bounds[1].cpu()).numpy()

    U = torch.as_tensor(g.random((n_initial, n_obs * d)), dtype=torch.float64)
    rounds = [0] * n_initial
    ys, ses = [], []
    for u in U:
        r = utility(problem, to_design(u), method=method, rng=seed_int(g), **budget)
        ys.append(r.estimate)
        ses.append(r.se)
    bounds01 = torch.stack([torch.zeros(n_obs * d, dtype=torch.float64), torch.ones(n_obs * d, dtype=torch.float64)])

    def fit() -> SingleTaskGP:
        Y = torch.tensor(ys, dtype=torch.float64)[:, None]
        Yvar = torch.tensor(ses, dtype=torch.float64).clamp_min(1e-6)[:, None] ** 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = SingleTaskGP(U, Y, train_Yvar=Yvar, outcome_transform=Standardize(m=1))
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return model

    for it in range(n_iterations):
        model = fit()
        with torch_seed(g):
            acq = qLogNoisyExpectedImprovement(model, X_baseline=U,
                                               sampler=SobolQMCNormalSampler(torch.Size([128]), seed=seed_int(g)),
                                               prune_baseline=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cand, _ = optimize_acqf(acq, bounds=bounds01, q=q, num_restarts=num_restarts,
                                        raw_samples=raw_samples)
        for u in cand.detach():
            r = utility(problem, to_design(u), method=method, rng=seed_int(g), **budget)
            ys.append(r.estimate)
            ses.append(r.se)
            rounds.append(it + 1)
        U = torch.cat([U, cand.detach().double()], 0)
    model = fit()
    with torch.no_grad():
        mean = model.posterior(U).mean[:, 0].numpy()
    b = int(np.argmax(mean))
    designs = np.stack([to_design(u) for u in U])
    return xr.Dataset(
        {"design": (("evaluation", "obs", "design_dim"), designs), "utility": ("evaluation", np.array(ys)),
         "se": ("evaluation", np.array(ses)), "round": ("evaluation", np.array(rounds)),
         "gp_mean": ("evaluation", mean), "best_design": (("obs", "design_dim"), designs[b]),
         "best_utility": float(mean[b]), "best_estimate": float(ys[b])},
        coords={"evaluation": np.arange(len(ys)), "obs": np.arange(n_obs), "design_dim": list(problem.design_names)},
        attrs={"strategy": "botorch_qLogNEI", "method": method, "q": q, "n_iterations": n_iterations,
               "target": problem.target.kind, "wall_time": time.perf_counter() - t0},
    )
