"""The one sequential steering loop: design -> measure -> assimilate -> redesign.

:func:`steer` is the loop of the package. It runs on either kind of belief the design
package knows:

* a torch :class:`~vvuq_twin.design.DesignProblem` (its prior is the starting belief): the
  posterior is a :class:`~vvuq_twin.design.GaussianPosterior` (exact, linear-Gaussian problems)
  or a :class:`~vvuq_twin.design.ParticlePosterior` (the package's SMC engine); designs come from
  a candidate set, botorch, a uniform baseline or a callable; ``measure(design) -> y``;
* a calibrated twin (a :class:`~vvuq_twin.TwinResult`): candidate measurements are scored by
  :func:`~vvuq_twin.design.twin_design_utilities` on the current posterior, the chosen one is
  measured (``measure(index) -> y``), leaves the pool, and is assimilated by
  :func:`vvuq_twin.assimilation.assimilate`; the state is a :class:`TwinPosterior`, whose
  ``result`` is the final twin after the loop.

Both go through the same loop (:func:`_run`): the step sequence, the seeding, the checks of the
measurements, the per-step and per-stage records and their Dataset. What differs -- how a design
is chosen, measured and assimilated, and what a stage summary holds -- is a *backend* object
(``_ProblemSteering`` in :mod:`vvuq_twin.design.sequential`, :class:`_TwinSteering` here). The old
twin entry :func:`steer_twin` is a deprecated wrapper of :func:`steer`.

This module does not import torch: the twin path is numpy (PyMC/ArviZ) throughout.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import xarray as xr

from .._rng import RNGLike, as_generator, seed_int
from ..exceptions import DesignError

__all__ = ["steer", "steer_twin", "TwinPosterior"]


class _Backend(Protocol):
    """What the loop needs of a kind of belief (internal)."""

    def observe(self) -> None: ...  # record a stage summary of the current belief

    def choose(self, step: int) -> tuple[Any, float, float]: ...  # (choice, utility, se)

    def measure(self, choice: Any, step: int) -> np.ndarray: ...  # checked measurement(s)

    def update(self, choice: Any, y: np.ndarray) -> None: ...  # assimilate

    def dataset(self, steps: dict[str, list[Any]], n_steps: int, t0: float) -> xr.Dataset: ...


def _run(backend: _Backend, n_steps: int) -> xr.Dataset:
    """The loop: stage 0 summary; then per step choose, measure, assimilate, summarise."""
    t0 = time.perf_counter()
    steps: dict[str, list[Any]] = {"choice": [], "y": [], "utility": [], "utility_se": []}
    backend.observe()
    for step in range(1, n_steps + 1):
        choice, u, se = backend.choose(step)
        y = backend.measure(choice, step)
        backend.update(choice, y)
        backend.observe()
        steps["choice"].append(choice)
        steps["y"].append(y)
        steps["utility"].append(float(u))
        steps["utility_se"].append(float(se))
    return backend.dataset(steps, n_steps, t0)


def _is_twin_result(model: Any) -> bool:
    """A calibrated twin (duck-typed TwinResult: no torch import to tell it from a DesignProblem)."""
    return getattr(model, "twin", None) is not None and hasattr(model, "idata")


def _differs(value: Any, default: Any) -> bool:
    if default is None:
        return value is not None
    return not (isinstance(value, type(default)) and value == default)


# ------------------------------------------------------------------ the twin backend
class TwinPosterior:
    """The belief of a twin during steering: the current :class:`~vvuq_twin.TwinResult`.

    :meth:`update` assimilates new measurements (:func:`vvuq_twin.assimilation.assimilate`,
    continuing the same assimilation state from step to step) and refreshes :attr:`result`.

    Parameters
    ----------
    result : TwinResult
        The calibrated twin at the start.
    assimilate_options : dict, optional
        Keywords of :func:`vvuq_twin.assimilation.assimilate`.

    Attributes
    ----------
    result : TwinResult
        The current posterior (after the last update).
    state : TwinAssimilation or None
        The assimilation state (None before the first update).
    """

    def __init__(self, result: Any, *, assimilate_options: dict[str, Any] | None = None) -> None:
        if getattr(result, "twin", None) is None or not hasattr(result, "idata"):
            raise DesignError("TwinPosterior needs a calibrated twin (a TwinResult with its twin attached); "
                              "for an assimilation state pass state.to_result(rng=...).")
        self.state, self.result = None, result
        self.assimilate_options = dict(assimilate_options or {})

    def update(self, data: Any, rng: np.random.Generator) -> None:
        """Assimilate ``data`` (a :class:`~vvuq_twin.TwinData`) into the current posterior."""
        from ..assimilation.twin_adapter import assimilate

        self.state = assimilate(self.state if self.state is not None else self.result, data,
                                rng=seed_int(rng), **self.assimilate_options)
        self.result = self.state.to_result(rng=seed_int(rng))


class _TwinSteering:
    """Steering a calibrated twin over a pool of candidate measurements (each measured once)."""

    def __init__(self, posterior: TwinPosterior, x: Any, measure: Callable[[int], Any], *, designer: str,
                 target: Any, unit: Any, y_sd: Any, n_draws: int | None, n_steps: int,
                 gen: np.random.Generator) -> None:
        if designer not in ("candidates", "utility", "random"):
            raise ValueError("The 'designer' parameter of steer on a twin must be 'candidates' (the best "
                             f"candidate by utility) or 'random'; got {designer!r}.")
        self.designer = "utility" if designer in ("candidates", "utility") else "random"
        if x is None:
            raise DesignError("steer on a twin needs `candidates`: the pool of candidate inputs, shape "
                              "(n_candidates,) or (n_candidates, d).")
        X = np.asarray(x, float)
        self.X, self.X2 = X, (X[:, None] if X.ndim == 1 else X)
        n_cand = self.X2.shape[0]
        if n_steps > n_cand:
            raise DesignError(f"n_steps={n_steps} exceeds the {n_cand} candidates (each is measured once).")
        self.units = None
        if unit is not None:
            self.units = np.asarray([unit] * n_cand if isinstance(unit, str) else unit).astype(str)
            if self.units.shape != (n_cand,):
                raise DesignError(f"`unit` must be one label or one per candidate ({n_cand}).")
        self.ysd = None if y_sd is None else np.broadcast_to(np.asarray(y_sd, float), (n_cand,)).copy()
        self.posterior, self.measure_fn, self.target, self.n_draws = posterior, measure, target, n_draws
        self.gen, self.n_cand, self.n_steps = gen, n_cand, n_steps
        self.scalars = [p.name for p in posterior.result.twin.parameters if not p.per_unit]
        self.pool = list(range(n_cand))
        self.util_rec = np.full((n_steps, n_cand), np.nan)
        self.qm: list[float] = []
        self.qs: list[float] = []
        self.psd: dict[str, list[float]] = {n: [] for n in self.scalars}
        self.current_target: Any = target
        self._step = 0

    def observe(self) -> None:
        res = self.posterior.result
        post = res.idata.posterior
        for n in self.scalars:
            self.psd[n].append(float(post[n].std()))
        if callable(self.target):
            t = self.target(res)
            q = t.get("qoi") if isinstance(t, dict) else t
            if q is not None and not (isinstance(t, dict) and "loss" in t):
                qv = np.asarray(q.values if isinstance(q, xr.DataArray) else q, float)
                self.qm.append(float(qv.mean()))
                self.qs.append(float(qv.std()))
            self.current_target = t
        else:
            self.current_target = self.target

    def choose(self, step: int) -> tuple[int, float, float]:
        from .twin import twin_design_utilities

        rows = np.asarray(self.pool)
        if self.designer == "utility":
            u = twin_design_utilities(
                self.posterior.result, self.X2[rows] if self.X.ndim == 2 else self.X[rows],
                unit=None if self.units is None else self.units[rows].tolist(), target=self.current_target,
                y_sd=None if self.ysd is None else self.ysd[rows], n_draws=self.n_draws, rng=seed_int(self.gen),
            )
            self.util_rec[step - 1, rows] = u["utility"].values
            k = int(u.attrs["best"])
            cu, cse = float(u["utility"].values[k]), float(u["utility_se"].values[k])
        else:
            k = int(self.gen.integers(len(rows)))
            cu, cse = np.nan, np.nan
        return int(rows[k]), cu, cse

    def measure(self, idx: int, step: int) -> np.ndarray:
        y_new = float(self.measure_fn(idx))
        if not np.isfinite(y_new):
            raise DesignError(f"measure({idx}) returned {y_new} at step {step}; a measurement must be finite.")
        return np.array([y_new])

    def update(self, idx: int, y: np.ndarray) -> None:
        from ..twin.data import TwinData

        self.pool.remove(idx)
        new = TwinData(
            x=self.X2[[idx]], y=y, unit=None if self.units is None else self.units[[idx]],
            y_sd=None if self.ysd is None else self.ysd[[idx]],
            input_names=self.posterior.result.data.input_names,
        )
        self.posterior.update(new, self.gen)

    def dataset(self, steps: dict[str, list[Any]], n_steps: int, t0: float) -> xr.Dataset:
        ds = xr.Dataset(
            {
                "chosen": ("step", np.asarray(steps["choice"])),
                "y": ("step", np.concatenate(steps["y"])),
                "utility": (("step", "candidate"), self.util_rec),
                "chosen_utility": ("step", np.asarray(steps["utility"])),
                "chosen_utility_se": ("step", np.asarray(steps["utility_se"])),
                **{f"{n}_sd": ("stage", np.asarray(v)) for n, v in self.psd.items()},
            },
            coords={"step": np.arange(1, n_steps + 1), "candidate": np.arange(self.n_cand),
                    "stage": np.arange(n_steps + 1)},
            attrs={"designer": self.designer, "target": "parameters" if isinstance(self.target, str) else "callable"},
        )
        if self.qm:
            ds["qoi_mean"] = ("stage", np.asarray(self.qm))
            ds["qoi_sd"] = ("stage", np.asarray(self.qs))
        return ds


# ------------------------------------------------------------------ the loop
_PROBLEM_ONLY = {"n_obs_per_step": 1, "n_particles": 4000, "method": "auto", "budget": None, "truth": None,
                 "error_fn": None}
_TWIN_ONLY = {"target": "parameters", "unit": None, "y_sd": None, "n_draws": 1000, "assimilate_options": None}


def steer(
    model: Any,
    measure: Callable[[Any], Any],
    *,
    n_steps: int,
    designer: Any = "candidates",
    candidates: Any = None,
    posterior: Any = None,
    rng: RNGLike = None,
    n_obs_per_step: int = 1,
    n_particles: int = 4000,
    method: str = "auto",
    budget: dict[str, Any] | None = None,
    truth: Any = None,
    error_fn: Callable[[Any, Any], Any] | None = None,
    target: Any = "parameters",
    unit: str | Sequence[str] | None = None,
    y_sd: Any = None,
    n_draws: int | None = 1000,
    assimilate_options: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Run the sequential design loop on a design problem or on a calibrated twin.

    Parameters
    ----------
    model : DesignProblem or TwinResult
        The starting belief: a torch :class:`~vvuq_twin.design.DesignProblem` (its prior; its
        target sets the utility, EIG or EVSI), or a calibrated twin (its posterior).
    measure : callable
        Design problem: ``measure(design (n_obs, d) ndarray) -> y (n_obs,)``; twin:
        ``measure(index) -> float``, the measurement of candidate ``index``. The real system, a
        held-back dataset, or a synthetic truth (:func:`~vvuq_twin.design.synthetic_measurement`).
    n_steps : int
        Number of steps (a twin: one measurement per step, each candidate at most once).
    designer : str or callable
        ``"candidates"``: the best design of ``candidates`` by utility (a design problem: greedy
        best ``n_obs_per_step``; a twin: the best candidate still in the pool);
        ``"random"``: a uniformly random design (baseline); design problems also take
        ``"botorch"`` (:func:`~vvuq_twin.design.optimize_design`) and a callable
        ``(problem_with_posterior_prior, step, generator) -> design``.
    candidates : array_like
        Candidate designs (n_candidates, d); a twin: candidate inputs, (n_candidates,) or
        (n_candidates, d). Required with ``designer="candidates"`` and for a twin.
    posterior : optional
        The belief object the loop updates in place (read it afterwards for the final state).
        Design problem: a :class:`~vvuq_twin.design.GaussianPosterior` or
        :class:`~vvuq_twin.design.ParticlePosterior` (default: Gaussian for a linear-Gaussian
        problem, else particles with ``n_particles``). Twin: a :class:`TwinPosterior` of the
        result (its ``.result`` is the final twin).
    rng : Generator, int or None
        Seeds every random step of the loop.
    n_obs_per_step, n_particles, method, budget, truth, error_fn
        Design problems only: measurements per step; particles of the default posterior; the
        utility estimator and its budget keywords; true parameters with ``error_fn(theta (n, p),
        truth) -> (n,)`` to record the posterior expected error (default squared Euclidean).
    target, unit, y_sd, n_draws, assimilate_options
        Twins only: ``"parameters"`` or ``target(result) -> QoI array (chain, draw)`` /
        ``{"loss": ...}`` recomputed on the current posterior at every step; the unit of each
        candidate; known measurement sds; posterior draws of the utility estimator; keywords
        of :func:`vvuq_twin.assimilation.assimilate`.

    Returns
    -------
    xarray.Dataset
        Design problem: dims ``step`` (1..n_steps), ``stage`` (0..n_steps; 0 is the prior),
        ``obs``, ``design_dim``, ``param``: ``design``, ``y``, ``utility``, ``utility_se``,
        ``posterior_mean``, ``posterior_sd``, ``posterior_entropy``, ``ess`` and, with
        ``truth``, ``posterior_error``. Twin: dims ``step``, ``candidate``, ``stage``:
        ``chosen`` (candidate index), ``y``, ``utility`` (of every candidate still in the pool,
        NaN otherwise), ``chosen_utility``, ``chosen_utility_se``, ``<param>_sd`` per stage for
        the scalar parameters and ``qoi_mean``/``qoi_sd`` per stage for a QoI target.

    Raises
    ------
    ValueError, DesignError
        Bad ``n_steps``, designer, candidates or keywords that do not apply to the model
        (raised before any design is scored).
    """
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1; got {n_steps!r}.")
    given = dict(n_obs_per_step=n_obs_per_step, n_particles=n_particles, method=method, budget=budget,
                 truth=truth, error_fn=error_fn, target=target, unit=unit, y_sd=y_sd, n_draws=n_draws,
                 assimilate_options=assimilate_options)
    g = as_generator(rng)
    if _is_twin_result(model):
        wrong = [k for k, d in _PROBLEM_ONLY.items() if _differs(given[k], d)]
        if wrong:
            raise DesignError(f"steer on a twin does not take {wrong} (design-problem keywords); a twin "
                              "measures one candidate per step and scores it with twin_design_utilities.")
        if posterior is None:
            posterior = TwinPosterior(model, assimilate_options=assimilate_options)
        elif not isinstance(posterior, TwinPosterior):
            raise DesignError("The posterior of a twin's steering loop must be a TwinPosterior of the result.")
        backend: _Backend = _TwinSteering(posterior, candidates, measure, designer=designer, target=target,
                                          unit=unit, y_sd=y_sd, n_draws=n_draws, n_steps=int(n_steps), gen=g)
        return _run(backend, int(n_steps))
    from .problem import DesignProblem

    if not isinstance(model, DesignProblem):
        raise DesignError(f"steer needs a DesignProblem or a calibrated twin (TwinResult); got {type(model)!r}.")
    wrong = [k for k, d in _TWIN_ONLY.items() if _differs(given[k], d)]
    if wrong:
        raise DesignError(f"steer on a DesignProblem does not take {wrong} (twin keywords); set the "
                          "problem's target with problem.with_target(...).")
    from .sequential import _ProblemSteering

    backend = _ProblemSteering(model, measure, designer=designer, candidates=candidates,
                               n_obs_per_step=n_obs_per_step, posterior=posterior, n_particles=n_particles,
                               method=method, budget=budget, truth=truth, error_fn=error_fn, gen=g)
    return _run(backend, int(n_steps))


def steer_twin(
    result: Any,
    x: Any,
    measure: Any,
    *,
    n_steps: int,
    unit: str | Sequence[str] | None = None,
    target: Any = "parameters",
    designer: str = "utility",
    y_sd: Any = None,
    n_draws: int | None = 1000,
    rng: RNGLike = None,
    assimilate_options: dict[str, Any] | None = None,
) -> tuple[xr.Dataset, Any]:
    """Deprecated: use :func:`steer` (``steer(result, measure, candidates=x, ...)``).

    Runs ``steer(result, measure, candidates=x, ...)`` with a :class:`TwinPosterior` and returns
    ``(record, final TwinResult)`` as before; ``designer="utility"`` is ``"candidates"``.
    """
    warnings.warn(
        "steer_twin(result, x, measure, ...) is deprecated: call vvuq_twin.design.steer(result, measure, "
        "candidates=x, ...) (the same loop; pass posterior=TwinPosterior(result) and read its .result "
        "for the final twin).",
        DeprecationWarning,
        stacklevel=2,
    )
    post = TwinPosterior(result, assimilate_options=assimilate_options)
    ds = steer(result, measure, n_steps=n_steps, designer="candidates" if designer == "utility" else designer,
               candidates=x, posterior=post, rng=rng, target=target, unit=unit, y_sd=y_sd, n_draws=n_draws)
    return ds, post.result
