"""Bayesian optimisation of a decision whose risk figure needs new simulator runs per evaluation.

The objective ``f(d)`` (e.g. the expected loss or superquantile of the twin's prediction at
decision ``d``, estimated from a fresh ensemble) is expensive and noisy. A botorch
``SingleTaskGP`` (inputs normalised to the unit cube, outputs standardised) models it;
``qLogNoisyExpectedImprovement`` proposes ``q`` decisions per round; each batch of objective
evaluations goes through :func:`vvuq_twin.ensembles.evaluate` (pass ``executor=`` to run them
in parallel). Initial decisions are a scrambled Sobol design (:mod:`scipy.stats.qmc`). The
recommendation is the evaluated decision with the lowest GP posterior mean (robust to noise),
reported with the GP's posterior standard deviation there.

Torch random state is forked and restored around each call (no global seeding leaks).
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import xarray as xr
from scipy.stats import qmc

from .._rng import RNGLike, as_generator, seed_int
from ..ensembles import evaluate
from ..exceptions import EnsembleError, SimulatorError
from .spec import DecisionSpecificationError, DecisionVariable

__all__ = ["BOResult", "optimize_bo"]


@dataclass(frozen=True)
class BOResult:
    """Result of :func:`optimize_bo`.

    Attributes
    ----------
    decision : xarray.DataArray
        Recommended decision over dim ``variable``.
    objective_mean, objective_sd : float
        GP posterior mean and standard deviation of the objective at the decision.
    history : xarray.Dataset
        Every evaluated decision (``d`` over ``evaluation`` x ``variable``) and its observed
        objective ``y``, with the round it was proposed in (0 = initial design).
    n_evaluations : int
        Objective evaluations (each may itself be a simulator ensemble).
    seed : int
    """

    decision: xr.DataArray
    objective_mean: float
    objective_sd: float
    history: xr.Dataset
    n_evaluations: int
    seed: int
    details: dict[str, Any] = field(default_factory=dict)


def _evaluate(objective: Callable[[np.ndarray], float], D: np.ndarray, executor: Executor | None) -> np.ndarray:
    try:
        res = evaluate(objective, D, executor=executor, on_failure="raise")
    except EnsembleError as exc:
        raise SimulatorError(f"optimize_bo: an objective evaluation failed: {exc}") from exc
    y = np.asarray(res.outputs, dtype=float).reshape(len(D), -1)
    if y.shape[1] != 1:
        raise DecisionSpecificationError(
            f"The BO objective must return one scalar per decision; got {y.shape[1]} values."
        )
    if not np.isfinite(y).all():
        raise SimulatorError("optimize_bo: the objective returned non-finite values.")
    return y[:, 0]


def optimize_bo(
    variables: Sequence[DecisionVariable],
    objective: Callable[[np.ndarray], float],
    *,
    n_initial: int | None = None,
    n_iterations: int = 15,
    q: int = 1,
    executor: Executor | None = None,
    num_restarts: int = 8,
    raw_samples: int = 256,
    mc_samples: int = 128,
    acq_maxiter: int = 100,
    torch_threads: int | None = 1,
    rng: RNGLike = None,
) -> BOResult:
    """Minimise an expensive, noisy objective of bounded decision variables with botorch.

    Parameters
    ----------
    variables : sequence of DecisionVariable
        Decision variables with finite bounds.
    objective : callable
        ``objective(d) -> float`` (lower is better); may run new simulations. Must be
        picklable when a process executor is used.
    n_initial : int, optional
        Size of the initial Sobol design (default ``2 (k + 1)``).
    n_iterations : int
        BO rounds after the initial design.
    q : int
        Decisions proposed (and evaluated in parallel) per round.
    executor : Executor, optional
        Where objective evaluations run.
    num_restarts, raw_samples, mc_samples, acq_maxiter : int
        Acquisition optimisation settings (restarts, raw candidates, QMC samples of the
        acquisition, L-BFGS-B iterations per restart).
    torch_threads : int or None
        Torch intra-op threads during the call (restored afterwards); 1 is fastest for the
        small GPs of BO, ``None`` leaves the setting alone.
    rng : Generator, int or None
        Seeds the Sobol design, the acquisition MC sampler and the optimiser restarts.

    Returns
    -------
    BOResult
    """
    import torch
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    vs = list(variables)
    if not vs or not all(isinstance(v, DecisionVariable) for v in vs):
        raise DecisionSpecificationError("optimize_bo needs a non-empty sequence of DecisionVariable(name, lower, upper).")
    k = len(vs)
    if n_initial is None:
        n_initial = 2 * (k + 1)
    if n_initial < 2 or n_iterations < 0 or q < 1:
        raise DecisionSpecificationError(
            f"optimize_bo needs n_initial >= 2, n_iterations >= 0 and q >= 1; got {n_initial}, {n_iterations}, {q}."
        )
    bounds = np.array([[v.lower, v.upper] for v in vs])
    seed = seed_int(rng)
    gen = as_generator(seed)
    sobol = qmc.Sobol(k, scramble=True, seed=gen)
    U = sobol.random(n_initial)
    X = bounds[:, 0] + U * (bounds[:, 1] - bounds[:, 0])
    Y = _evaluate(objective, X, executor)
    rounds = [0] * len(X)
    unit = torch.tensor([[0.0] * k, [1.0] * k], dtype=torch.double)

    def fit(Xn: np.ndarray, Yn: np.ndarray) -> Any:
        tx = torch.tensor((Xn - bounds[:, 0]) / (bounds[:, 1] - bounds[:, 0]), dtype=torch.double)
        ty = torch.tensor(-Yn[:, None], dtype=torch.double)  # botorch maximises
        model = SingleTaskGP(tx, ty, input_transform=Normalize(k, bounds=unit), outcome_transform=Standardize(1))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return model, tx

    old_threads = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(int(torch_threads))
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            mean, sd, X, Y, rounds = _bo_loop(
                fit, X, Y, rounds, objective, executor, bounds, unit, n_iterations, q,
                num_restarts, raw_samples, mc_samples, acq_maxiter, seed,
            )
    finally:
        torch.set_num_threads(old_threads)
    best = int(np.argmin(mean))
    names = [v.name for v in vs]
    history = xr.Dataset(
        {
            "d": (("evaluation", "variable"), X),
            "y": ("evaluation", Y),
            "round": ("evaluation", np.asarray(rounds)),
            "gp_mean": ("evaluation", mean),
        },
        coords={"variable": names, "evaluation": np.arange(len(Y))},
    )
    return BOResult(
        xr.DataArray(X[best], dims="variable", coords={"variable": names}, name="decision"),
        float(mean[best]), float(sd[best]), history, len(Y), seed,
        {"best_observed": float(Y.min()), "n_rounds": n_iterations, "q": q},
    )


def _bo_loop(fit, X, Y, rounds, objective, executor, bounds, unit, n_iterations, q,
             num_restarts, raw_samples, mc_samples, acq_maxiter, seed):
    import torch
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler

    for it in range(1, n_iterations + 1):
        model, tx = fit(X, Y)
        acq = qLogNoisyExpectedImprovement(
            model, X_baseline=tx,
            sampler=SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed + it),
        )
        cand, _ = optimize_acqf(
            acq, bounds=unit, q=q, num_restarts=num_restarts, raw_samples=raw_samples,
            options={"maxiter": acq_maxiter},
        )
        Dn = bounds[:, 0] + cand.detach().numpy() * (bounds[:, 1] - bounds[:, 0])
        Yn = _evaluate(objective, Dn, executor)
        X, Y = np.vstack([X, Dn]), np.concatenate([Y, Yn])
        rounds = rounds + [it] * len(Dn)
    model, tx = fit(X, Y)
    with torch.no_grad():
        post = model.posterior(tx)
        mean = -post.mean.squeeze(-1).numpy()
        sd = post.variance.clamp_min(0).sqrt().squeeze(-1).numpy()
    return mean, sd, X, Y, rounds
