"""Designs, training and verification of surrogates.

:func:`train_surrogate` draws a design (LHS or scrambled Sobol via ``scipy.stats.qmc``), runs the
simulator on it through :func:`vvuq_twin.ensembles.evaluate`, fits the surrogate, and verifies it
on a separate hold-out design: hold-out and leave-one-out Q^2 and coverage of the 95% predictive
intervals. Training cost (simulator runs, wall time) is always reported.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from typing import Any, Callable, Literal

import numpy as np
import xarray as xr

from .._rng import RNGLike, spawn_seeds
from ..ensembles import evaluate
from ..exceptions import QoIEvaluationError
from ..spaces import ParameterSpace
from .gp import GPSurrogate
from .pce import PCESurrogate

__all__ = ["draw_design", "train_surrogate", "verify_surrogate", "run_design"]


def draw_design(space: ParameterSpace, n: int, *, method: Literal["lhs", "sobol", "random"] = "lhs",
                rng: RNGLike = None) -> np.ndarray:
    """Draw ``n`` design points ``(n, dim)`` from ``space`` (LHS, scrambled Sobol or MC)."""
    return space.sample(n, rng=rng, method=method)


def run_design(fn: Callable[[np.ndarray], Any], X: np.ndarray, names: list[str], *,
               executor: Executor | None = None) -> tuple[np.ndarray, Any]:
    """Run ``fn`` on every row through :func:`~vvuq_twin.ensembles.evaluate`; raise on NaN/failures.

    Raises
    ------
    QoIEvaluationError
        Listing the failed or non-finite rows with their named input values.
    """
    res = evaluate(fn, X, executor=executor)
    y = np.asarray(res.outputs, float)
    if y.ndim > 1:
        if y.shape[1:] and int(np.prod(y.shape[1:])) != 1:
            raise QoIEvaluationError(
                f"The QoI must return a scalar per input row; got outputs of shape {y.shape[1:]}."
            )
        y = y.reshape(y.shape[0])
    bad = ~np.isfinite(y)
    if bad.any():
        errs = {f.index: f.error for f in res.failures}
        rows = np.where(bad)[0]
        shown = "; ".join(
            "{" + ", ".join(f"{n}={v:.4g}" for n, v in zip(names, X[i])) + "}"
            + (f" ({errs[i]})" if i in errs else " (NaN/inf)")
            for i in rows[:5]
        )
        ranges = ", ".join(
            f"{n} in [{X[rows, k].min():.4g}, {X[rows, k].max():.4g}]" for k, n in enumerate(names)
        )
        raise QoIEvaluationError(
            f"The QoI failed or returned NaN/inf for {bad.sum()} of {y.size} design rows. "
            f"Failing inputs: {shown}. Ranges of the failing inputs: {ranges}. Make the QoI "
            "finite over the whole input distribution (or narrow the distribution)."
        )
    return y, res


def verify_surrogate(surrogate: Any, X_test: np.ndarray, y_test: np.ndarray,
                     *, level: float = 0.95) -> xr.Dataset:
    """Hold-out and LOO verification of a fitted surrogate.

    Returns a Dataset with scalars ``q2_holdout``, ``q2_loo``, ``coverage_holdout`` (fraction of
    hold-out runs inside the central ``level`` predictive interval), ``coverage_loo``,
    ``rmse_holdout`` and attrs ``n_test``, ``level``.
    """
    from scipy import stats

    mean, var = surrogate.posterior(X_test, **({"observation_noise": True}
                                              if isinstance(surrogate, GPSurrogate) else {}))
    y_test = np.asarray(y_test, float)
    z = stats.norm.ppf(0.5 + level / 2)
    q2 = 1.0 - np.mean((mean - y_test) ** 2) / np.var(y_test)
    cov = np.mean(np.abs(mean - y_test) <= z * np.sqrt(var))
    return xr.Dataset(
        {
            "q2_holdout": q2,
            "q2_loo": float(getattr(surrogate, "q2_loo_", np.nan)),
            "coverage_holdout": cov,
            "coverage_loo": float(getattr(surrogate, "loo_coverage_", np.nan)),
            "rmse_holdout": float(np.sqrt(np.mean((mean - y_test) ** 2))),
        },
        attrs={"n_test": int(y_test.size), "level": float(level)},
    )


def train_surrogate(
    fn: Callable[[np.ndarray], Any],
    space: ParameterSpace,
    n_train: int,
    *,
    kind: Literal["gp", "pce"] = "gp",
    design: Literal["lhs", "sobol", "random"] = "lhs",
    n_test: int = 200,
    executor: Executor | None = None,
    rng: RNGLike = None,
    **options: Any,
) -> Any:
    """Draw a design, run the simulator, fit and verify a surrogate.

    Parameters
    ----------
    fn : callable
        Simulator/QoI of one input row, returning a scalar.
    space : ParameterSpace
        Input distribution the design is drawn from.
    n_train : int
        Simulator runs for training.
    kind : {"gp", "pce"}
        Surrogate type.
    design : {"lhs", "sobol", "random"}
        Training design.
    n_test : int
        Extra simulator runs for hold-out verification (0 skips the hold-out).
    executor : Executor, optional
        Passed to :func:`~vvuq_twin.ensembles.evaluate`.
    rng : Generator, int or None
        Seed.
    **options
        Passed to the surrogate constructor.

    Returns
    -------
    GPSurrogate or PCESurrogate
        Fitted, with ``training_`` (``n_runs``, ``n_test_runs``, ``simulator_time``,
        ``fit_time``, ``wall_time``, ``design``, ``seed``) and ``verification_`` (Dataset from
        :func:`verify_surrogate`, or None without a hold-out).
    """
    if kind not in ("gp", "pce"):
        raise ValueError(f"`kind` must be 'gp' or 'pce', got {kind!r}.")
    if n_train < 4:
        raise ValueError(f"`n_train` must be >= 4, got {n_train}.")
    t0 = time.perf_counter()
    s_design, s_test, s_fit = spawn_seeds(rng, 3)
    X = draw_design(space, n_train, method=design, rng=s_design)
    y, res = run_design(fn, X, space.names, executor=executor)
    sim_time = res.wall_time
    if kind == "gp":
        sur = GPSurrogate(rng=s_fit, **options).fit(X, y)
    else:
        sur = PCESurrogate(space, **options).fit(X, y)
    fit_time = sur.training_["wall_time"]
    ver = None
    n_test_runs = 0
    if n_test > 0:
        Xt = draw_design(space, n_test, method="random", rng=s_test)
        yt, rt = run_design(fn, Xt, space.names, executor=executor)
        n_test_runs = rt.n_runs
        sim_time += rt.wall_time
        ver = verify_surrogate(sur, Xt, yt)
    sur.training_ = {
        "n_runs": int(res.n_runs),
        "n_test_runs": int(n_test_runs),
        "simulator_time": float(sim_time),
        "fit_time": float(fit_time),
        "wall_time": float(time.perf_counter() - t0),
        "design": design,
    }
    sur.verification_ = ver
    return sur
