"""The SMC target in unconstrained space: parameter transforms, support checks, cost counters.

A :class:`ParticleModel` maps natural parameter values (dict name -> array ``(n, ...)``) to flat
unconstrained coordinates ``z`` (array ``(n, d)``) and back, and evaluates the log prior
(Jacobian included) and the log-likelihood of a data set at ``z``, optionally with gradients.
Two implementations:

* :class:`CallableModel` wraps natural-scale NumPy callables ``log_prior(theta)`` and
  ``log_likelihood(theta, data)`` with declared transforms (``"identity"``, ``"log"``,
  ``("interval", lower, upper)``, ``("lower", bound)``) and optional gradients;
* :class:`~vvuq_twin.assimilation.twin_adapter.TwinLogDensity` compiles the twin's PyMC model
  on its value variables (PyMC's own transforms and Jacobians, analytic gradients).

:class:`TemperedTarget` evaluates prior x L(past chunks) x L(new)^phi for the kernels: the prior
first, the likelihood only where the prior is finite (a proposal outside the support is
rejected without evaluating the likelihood), a failing batch call split until the failing
particles are isolated (they get ``-inf``), and every call counted. It can also carry a
*surrogate* of the past likelihood (:func:`thin_chunk`: every ``r``-th row of each unit of a
large past chunk, scaled by ``n/m``) whose gradient drives the HMC trajectories; the accept step
always uses the exact target, so the kernel stays exact and the surrogate only sets the cost and
the acceptance rate.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from .kernels import Evaluation, PopulationBlock
from ._rows import _n_rows

__all__ = ["ParticleModel", "CallableModel", "TemperedTarget", "TRANSFORMS", "thin_chunk"]

TRANSFORMS = ("identity", "log", "interval", "lower", "upper")


@runtime_checkable
class ParticleModel(Protocol):
    """What the SMC update needs of a model (see module docstring)."""

    has_gradient: bool

    def to_unconstrained(self, values: Mapping[str, np.ndarray]) -> np.ndarray: ...

    def from_unconstrained(self, z: np.ndarray) -> dict[str, np.ndarray]: ...

    def log_prior_z(self, z: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray | None]: ...

    def log_likelihood_z(self, z: np.ndarray, data: Mapping[str, np.ndarray],
                         grad: bool) -> tuple[np.ndarray, np.ndarray | None]: ...


def _check_out(out: Any, n: int, what: str) -> np.ndarray:
    out = np.asarray(out, dtype=float)
    if out.shape != (n,):
        raise ValueError(
            f"{what} returned shape {out.shape}; expected ({n},), one value per particle. "
            "Vectorise it over the leading particle axis."
        )
    return np.where(np.isnan(out), -np.inf, out)


class CallableModel:
    """Natural-scale NumPy log densities seen in unconstrained coordinates.

    Parameters
    ----------
    log_likelihood : callable ``(theta, data) -> (n,)``
    log_prior : callable ``(theta) -> (n,)``
        ``-inf`` outside the support.
    shapes : dict name -> tuple
        Per-particle shape of each parameter (in order).
    transforms : dict name -> spec, optional
        ``"identity"`` (default), ``"log"`` (positive), ``("lower", a)``, ``("upper", b)``,
        ``("interval", a, b)``; unlisted parameters are unconstrained.
    grad_log_likelihood, grad_log_prior : callables, optional
        ``(theta, data) -> dict name -> (n, ...)`` and ``(theta) -> dict``: natural-scale
        gradients, enabling the MALA kernel (the chain rule through the transforms is applied
        here).
    population : sequence of (loc, scale, units, centered), optional
        Hierarchical blocks, by parameter name: the population location ``loc`` (scalar), its
        scale ``scale`` (scalar, transform ``"log"``) and the per-unit parameter ``units``
        (standardised offsets when ``centered`` is False, unit values otherwise). They enable
        the population group move of the rejuvenation
        (:func:`~vvuq_twin.assimilation.kernels.population_step`).
    """

    def __init__(self, log_likelihood: Callable, log_prior: Callable, shapes: Mapping[str, tuple],
                 transforms: Mapping[str, Any] | None = None, *,
                 grad_log_likelihood: Callable | None = None,
                 grad_log_prior: Callable | None = None,
                 population: Sequence[tuple[str, str, str, bool]] = ()) -> None:
        self.log_likelihood = log_likelihood
        self.log_prior = log_prior
        self.shapes = {k: tuple(int(s) for s in v) for k, v in shapes.items()}
        self.transforms: dict[str, tuple] = {}
        for k, spec in (transforms or {}).items():
            if k not in self.shapes:
                raise ValueError(f"`transforms` names {k!r}, which is not a parameter (parameters: {list(self.shapes)}).")
            t = (spec,) if isinstance(spec, str) else tuple(spec)
            if t[0] not in TRANSFORMS or (t[0] == "interval" and len(t) != 3) or \
                    (t[0] in ("lower", "upper") and len(t) != 2) or (t[0] in ("identity", "log") and len(t) != 1):
                raise ValueError(
                    f"Transform of {k!r} must be 'identity', 'log', ('lower', a), ('upper', b) or "
                    f"('interval', a, b); got {spec!r}."
                )
            if t[0] == "interval" and not float(t[1]) < float(t[2]):
                raise ValueError(f"Interval transform of {k!r} needs lower < upper, got {spec!r}.")
            self.transforms[k] = t
        self.has_gradient = grad_log_likelihood is not None and grad_log_prior is not None
        self.grad_log_likelihood = grad_log_likelihood
        self.grad_log_prior = grad_log_prior
        self.sizes = {k: int(np.prod(s, dtype=int)) for k, s in self.shapes.items()}
        self.dim = int(sum(self.sizes.values()))
        start, j = {}, 0
        for k in self.shapes:
            start[k] = j
            j += self.sizes[k]
        blocks = []
        for spec in population:
            if len(spec) != 4:
                raise ValueError(f"A population block is (loc, scale, units, centered); got {spec!r}.")
            loc, scale, units, centered = spec
            for nm in (loc, scale, units):
                if nm not in self.shapes:
                    raise ValueError(f"Population block {spec!r} names {nm!r}, which is not a parameter "
                                     f"(parameters: {list(self.shapes)}).")
            if self.sizes[loc] != 1 or self.sizes[scale] != 1:
                raise ValueError(f"Population block {spec!r}: location and scale must be scalars.")
            if self.transforms.get(scale) != ("log",):
                raise ValueError(f"Population block {spec!r}: the scale {scale!r} needs transforms[{scale!r}] "
                                 "= 'log' (the group move steps in log scale).")
            blocks.append(PopulationBlock(start[loc], start[scale],
                                          tuple(range(start[units], start[units] + self.sizes[units])),
                                          bool(centered), str(units)))
        self._population = tuple(blocks)

    def population_blocks(self) -> tuple[PopulationBlock, ...]:
        """Columns of the declared hierarchical blocks (see ``population``)."""
        return self._population

    # coordinates --------------------------------------------------------------------------
    def _split(self, z: np.ndarray) -> dict[str, np.ndarray]:
        out, j = {}, 0
        for k, s in self.shapes.items():
            out[k] = z[:, j:j + self.sizes[k]]
            j += self.sizes[k]
        return out

    def _fwd(self, k: str, x: np.ndarray) -> np.ndarray:
        t = self.transforms.get(k, ("identity",))
        with np.errstate(divide="ignore", invalid="ignore"):
            if t[0] == "log":
                return np.log(x)
            if t[0] == "lower":
                return np.log(x - t[1])
            if t[0] == "upper":
                return np.log(t[1] - x)
            if t[0] == "interval":
                a, b = float(t[1]), float(t[2])
                return np.log(x - a) - np.log(b - x)
        return x

    def _bwd(self, k: str, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """natural value, log |dx/du| and d(log|dx/du|)/du, elementwise."""
        t = self.transforms.get(k, ("identity",))
        with np.errstate(over="ignore", under="ignore"):
            if t[0] in ("log", "lower", "upper"):
                e = np.exp(u)
                x = e if t[0] == "log" else (t[1] + e if t[0] == "lower" else t[1] - e)
                return x, u, np.ones_like(u)
            if t[0] == "interval":
                a, b = float(t[1]), float(t[2])
                s = 0.5 * (1 + np.tanh(0.5 * u))  # stable logistic
                x = a + (b - a) * s
                lj = np.log(b - a) - np.logaddexp(0, u) - np.logaddexp(0, -u)
                return x, lj, 1.0 - 2.0 * s
        return u, np.zeros_like(u), np.zeros_like(u)

    def to_unconstrained(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        n = np.asarray(next(iter(values.values()))).shape[0]
        cols = []
        for k in self.shapes:
            x = np.asarray(values[k], float).reshape(n, -1)
            u = self._fwd(k, x)
            if not np.all(np.isfinite(u)):
                raise ValueError(
                    f"Particles of {k!r} lie outside the support of its transform "
                    f"{self.transforms.get(k)}; check the transforms or the particles."
                )
            cols.append(u)
        return np.hstack(cols)

    def from_unconstrained(self, z: np.ndarray) -> dict[str, np.ndarray]:
        n = z.shape[0]
        return {k: self._bwd(k, u)[0].reshape((n,) + self.shapes[k]) for k, u in self._split(z).items()}

    def _natural(self, z):
        parts = {k: self._bwd(k, u) for k, u in self._split(z).items()}
        n = z.shape[0]
        theta = {k: p[0].reshape((n,) + self.shapes[k]) for k, p in parts.items()}
        return theta, parts

    def _chain(self, grads: Mapping[str, np.ndarray], parts, z) -> np.ndarray:
        """d/dz of a natural-scale function with gradient ``grads`` (dict name -> (n, ...))."""
        n = z.shape[0]
        cols = []
        for k, (x, lj, _) in parts.items():
            gx = np.asarray(grads[k], float).reshape(n, -1)
            t = self.transforms.get(k, ("identity",))
            if t[0] == "identity":
                dx = np.ones_like(x)
            elif t[0] == "upper":
                dx = -np.exp(lj)
            else:
                dx = np.exp(lj)
            cols.append(gx * dx)
        return np.hstack(cols)

    def log_prior_z(self, z: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        n = z.shape[0]
        theta, parts = self._natural(z)
        lp = _check_out(self.log_prior(theta), n, "log_prior")
        lj = sum(p[1].sum(1) for p in parts.values())
        out = lp + lj
        if not grad:
            return out, None
        g = self._chain(self.grad_log_prior(theta), parts, z) + np.hstack([p[2] for p in parts.values()])
        return out, g

    def log_likelihood_z(self, z: np.ndarray, data: Mapping[str, np.ndarray],
                         grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        n = z.shape[0]
        theta, parts = self._natural(z)
        ll = _check_out(self.log_likelihood(theta, data), n, getattr(self.log_likelihood, "__name__", "log_likelihood"))
        if not grad:
            return ll, None
        return ll, self._chain(self.grad_log_likelihood(theta, data), parts, z)


def thin_chunk(data: Mapping[str, np.ndarray], every: int, *, unit_key: str = "unit"
               ) -> tuple[dict[str, np.ndarray], float]:
    """Every ``every``-th row of ``data`` (per unit when ``data`` has ``unit_key``), and the weight
    ``n / m`` that makes the thinned log-likelihood an estimate of the full one.

    Rows are taken evenly spaced within each unit in their stored order (centred: offsets
    ``every // 2, every // 2 + every, ...``), so a unit's series is covered end to end; a unit
    keeps at least one row.

    Returns
    -------
    (dict, float)
        The thinned data (same keys, rows along axis 0) and the weight ``n / m``.
    """
    every = int(every)
    if every < 1:
        raise ValueError(f"`every` must be a positive integer, got {every}.")
    n = _n_rows(data)
    if n == 0:
        raise ValueError("Cannot thin an empty data chunk.")
    if unit_key in data:
        u = np.asarray(data[unit_key])
        idx = []
        for unit in dict.fromkeys(u.tolist()):
            rows = np.flatnonzero(u == unit)
            pick = rows[min(every // 2, rows.size - 1)::every]
            idx.append(pick)
        idx = np.sort(np.concatenate(idx))
    else:
        idx = np.arange(min(every // 2, n - 1), n, every)
    return {k: np.asarray(v)[idx] for k, v in data.items()}, float(n / idx.size)


def _bisect_eval(fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]], z: np.ndarray,
                 grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``fn`` (a compiled log density, value and optional gradient) on a block of particles; a
    block that raises is split in halves, and a single raising particle gets ``-inf`` (rejected)
    instead of failing the whole batch. A shape error is a bug and is raised."""
    try:
        with np.errstate(all="ignore"):
            return fn(z)
    except (ValueError, FloatingPointError, ArithmeticError, RuntimeError) as err:
        if "returned shape" in str(err):
            raise
        if z.shape[0] == 1:
            return np.full(1, -np.inf), (np.zeros_like(z) if grad else None)
        h = z.shape[0] // 2
        a, ga = _bisect_eval(fn, z[:h], grad)
        b, gb = _bisect_eval(fn, z[h:], grad)
        return np.concatenate([a, b]), (np.vstack([ga, gb]) if grad else None)


class TemperedTarget:
    """``evaluate(z, grad) -> Evaluation`` of prior x L(past) x L(new)^phi, with cost counters.

    Attributes
    ----------
    n_calls : int
        Vectorised likelihood calls (one per data chunk per evaluation).
    n_gradient_calls : int
        Of those, calls that also returned a gradient.
    n_point_evals : int
        Particle-level likelihood evaluations of the new batch and all past data
        (particles x chunks), counting only proposals inside the support.
    n_outside_support : int
        Proposals rejected on the prior alone (their likelihood was never evaluated).
    n_row_evals : int
        Particle x observation likelihood terms evaluated exactly (particles x rows of all
        chunks), the cost measure that does not depend on the machine.
    n_surrogate_calls, n_surrogate_row_evals : int
        The same for the surrogate gradient (:meth:`surrogate_grad`).
    seconds : float
        Time spent evaluating.

    Parameters
    ----------
    model : ParticleModel
    past : sequence of dict
        Data chunks assimilated before (exact past likelihood = sum over them).
    batch : dict
        The new batch.
    surrogate_past : sequence of (float, dict), optional
        Weighted chunks whose weighted log-likelihood sum approximates the past likelihood (e.g.
        from :func:`thin_chunk`); enables :meth:`surrogate_grad`.
    sufficient_statistics : True, False or "auto"
        Evaluate each past chunk that admits it by its sufficient statistics (one row per group
        of replicate rows; exact, checked at ``check_z`` before use): see
        :func:`~vvuq_twin.assimilation.sufficient.plan_reductions`. The plan, with the reason
        for every chunk kept in full, is :attr:`reduction`; it is made when first needed (the
        first evaluation of the past), so that an update that only reweights compiles nothing
        for it.
    check_z : ndarray (k, d), optional
        Particles at which a new reduction is checked against the full chunk.
    """

    def __init__(self, model: ParticleModel, past: Sequence[Mapping[str, np.ndarray]],
                 batch: Mapping[str, np.ndarray],
                 surrogate_past: Sequence[tuple[float, Mapping[str, np.ndarray]]] | None = None, *,
                 sufficient_statistics: bool | str = False,
                 check_z: np.ndarray | None = None) -> None:
        self.model = model
        self.past = list(past)
        self.batch = batch
        self.surrogate_past = None if surrogate_past is None else [(float(w), c) for w, c in surrogate_past]
        # the sufficient-statistic reduction of the past chunks: planned on first use (`reduction`)
        self._sufficient = sufficient_statistics
        self._check_z = check_z
        self._plan: Any = None
        self._rows_full = sum(_n_rows(c) for c in self.past) + _n_rows(batch)
        if sufficient_statistics not in (True, False, "auto"):
            raise ValueError(f"`sufficient_statistics` must be True, False or 'auto', got {sufficient_statistics!r}.")
        self.rows_surrogate = (None if self.surrogate_past is None else
                               sum(_n_rows(c) for _, c in self.surrogate_past) + _n_rows(batch))
        self.n_row_evals = 0
        self._correction: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        #: residual sd (nats) of the fitted surrogate correction at the particles it was fitted on
        self.surrogate_residual_sd = float("nan")
        self.n_surrogate_calls = 0
        self.n_surrogate_row_evals = 0
        self.n_calls = 0
        self.n_gradient_calls = 0
        self.n_point_evals = 0
        self.n_outside_support = 0
        self.seconds = 0.0

    def safe_log_likelihood(self, z: np.ndarray, data: Mapping[str, np.ndarray], grad: bool):
        """Likelihood on a block of in-support particles; a raising block is split in halves."""
        return _bisect_eval(lambda zz: self.model.log_likelihood_z(zz, data, grad), z, grad)

    def safe_reduced_log_likelihood(self, z: np.ndarray, reduced: Any, grad: bool):
        """:meth:`safe_log_likelihood` of a chunk reduced to its sufficient statistics."""
        return _bisect_eval(lambda zz: self.model.log_likelihood_reduced_z(zz, reduced, grad), z, grad)

    @property
    def reduction(self) -> Any:
        """The :class:`~vvuq_twin.assimilation.sufficient.ReductionPlan` of the past chunks
        (made, with its compiles and exactness checks, on first access)."""
        if self._plan is None:
            from .sufficient import plan_reductions

            self._plan = plan_reductions(self.model, self.past, self._sufficient, self._check_z)
        return self._plan

    @property
    def reduction_planned(self) -> bool:
        """Whether :attr:`reduction` has been made (the past was needed)."""
        return self._plan is not None

    @property
    def rows_exact(self) -> int:
        """Rows per exact evaluation: the past chunks (reduced ones by their groups) and the
        batch; before the reduction is planned, all rows."""
        if self._plan is None:
            return self._rows_full
        return self._plan.n_rows_reduced + _n_rows(self.batch)

    @property
    def exact_past(self) -> list[Mapping[str, np.ndarray]]:
        """The past chunks evaluated in full (not reduced)."""
        return [term for kind, term in self.reduction.terms if kind == "full"]

    def safe_log_prior(self, z: np.ndarray, grad: bool):
        """Log prior on a block of finite particles; a raising block (e.g. a population scale that
        underflows to 0 fails a compiled ``sigma > 0`` check) is split in halves, and a single
        raising particle gets ``-inf`` (rejected) instead of failing the whole batch."""
        return _bisect_eval(lambda zz: self.model.log_prior_z(zz, grad), z, grad)

    def __call__(self, z: np.ndarray, grad: bool = False) -> Evaluation:
        t0 = time.perf_counter()
        n, d = z.shape
        ok = np.all(np.isfinite(z), axis=1)
        lp = np.full(n, -np.inf)
        glp = np.zeros((n, d)) if grad else None
        if ok.any():
            with np.errstate(all="ignore"):
                lp_ok, g_ok = self.safe_log_prior(z[ok], grad)
            lp_ok = np.where(np.isnan(lp_ok), -np.inf, np.asarray(lp_ok, float))
            lp[ok] = lp_ok
            if grad:
                glp[ok] = g_ok
        ok &= np.isfinite(lp)
        self.n_outside_support += int(n - ok.sum())
        ll_past, ll_new = np.full(n, -np.inf), np.full(n, -np.inf)
        g_past = np.zeros((n, d)) if grad else None
        g_new = np.zeros((n, d)) if grad else None
        if ok.any():
            zs = z[ok]
            acc = np.zeros(zs.shape[0])
            gacc = np.zeros_like(zs) if grad else None
            for kind, term in self.reduction.terms:
                ll, g = (self.safe_log_likelihood(zs, term, grad) if kind == "full"
                         else self.safe_reduced_log_likelihood(zs, term, grad))
                acc = acc + ll
                if grad:
                    gacc = gacc + g
            ll_past[ok] = acc
            ll, g = self.safe_log_likelihood(zs, self.batch, grad)
            ll_new[ok] = ll
            if grad:
                g_past[ok], g_new[ok] = gacc, g
            k = len(self.reduction.terms) + 1
            self.n_calls += k
            self.n_gradient_calls += k if grad else 0
            self.n_point_evals += k * int(ok.sum())
            self.n_row_evals += self.rows_exact * int(ok.sum())
        bad = ~(np.isfinite(ll_past) & np.isfinite(ll_new))
        lp = np.where(bad, -np.inf, lp)
        self.seconds += time.perf_counter() - t0
        gb = None if not grad else np.nan_to_num(glp + g_past)
        return Evaluation(lp, ll_past, ll_new, gb, None if not grad else np.nan_to_num(g_new))

    @property
    def has_surrogate(self) -> bool:
        return self.surrogate_past is not None

    @property
    def surrogate_cost(self) -> float:
        """Rows evaluated by a surrogate gradient relative to an exact evaluation."""
        if self.surrogate_past is None:
            return 1.0
        return float(self.rows_surrogate / max(self.rows_exact, 1))

    def _thinned_sum(self, z: np.ndarray, grad: bool):
        tot = np.zeros(z.shape[0])
        g = np.zeros_like(z) if grad else None
        for w, chunk in self.surrogate_past:
            ll, gc = self.safe_log_likelihood(z, chunk, grad)
            tot += w * ll
            if grad:
                g += w * gc
        return tot, g

    def fit_surrogate(self, z: np.ndarray, ll_past: np.ndarray) -> float:
        """Fit a control-variate correction of the surrogate at particles with exact ``ll_past``.

        The surrogate's error ``e(z) = L_past(z) - sum_c w_c L_c(z)`` is smooth and varies
        little over the particles' extent; it is fitted by least squares on the features
        ``1, u_j, u_j^2`` of the standardised coordinates ``u = (z - mean) / sd`` and added to
        the surrogate (value and gradient), so that the trajectories follow the exact ridge
        rather than the thinned data's. Returns the residual sd (nats) of the fit; the exact
        accept step does not depend on it.
        """
        if self.surrogate_past is None:
            raise RuntimeError("This target carries no surrogate; build it with `surrogate_past`.")
        ll_past = np.asarray(ll_past, float)
        ok = np.all(np.isfinite(z), axis=1) & np.isfinite(ll_past)
        zs, lp = z[ok], ll_past[ok]
        n, d = zs.shape
        if n < 4 * (2 * d + 1):
            self._correction = None
            self.surrogate_residual_sd = float("nan")
            return self.surrogate_residual_sd
        t0 = time.perf_counter()
        thin, _ = self._thinned_sum(zs, False)
        self.n_surrogate_calls += len(self.surrogate_past)
        self.n_surrogate_row_evals += (self.rows_surrogate - _n_rows(self.batch)) * n
        self.seconds += time.perf_counter() - t0
        fin = np.isfinite(thin)
        r = lp[fin] - thin[fin]
        m, sd = zs[fin].mean(0), np.maximum(zs[fin].std(0), 1e-12)
        u = (zs[fin] - m) / sd
        F = np.hstack([np.ones((u.shape[0], 1)), u, u * u])
        beta = np.linalg.lstsq(F, r, rcond=None)[0]
        res = r - F @ beta
        self._correction = (m, sd, beta[1:1 + d], beta[1 + d:])
        self.surrogate_residual_sd = float(res.std())
        return self.surrogate_residual_sd

    def surrogate_grad(self, z: np.ndarray, phi: float) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of the surrogate tempered log density ``prior + sum_c w_c L_c + phi L_new``.

        Returns ``(ok, grad)``: ``ok`` (n,) is False where the point is outside the support or
        the surrogate is not finite (its gradient is set to 0 there).
        """
        if self.surrogate_past is None:
            raise RuntimeError("This target carries no surrogate; build it with `surrogate_past`.")
        t0 = time.perf_counter()
        n, d = z.shape
        ok = np.all(np.isfinite(z), axis=1)
        grad = np.zeros((n, d))
        if ok.any():
            idx = np.flatnonzero(ok)
            with np.errstate(all="ignore"):
                lp, glp = self.model.log_prior_z(z[idx], True)
            lp = np.asarray(lp, float)
            keep = np.isfinite(lp)
            ok[idx[~keep]] = False
            idx, lp, glp = idx[keep], lp[keep], np.array(glp, float)[keep]
            if idx.size:
                zs = z[idx]
                thin, gthin = self._thinned_sum(zs, True)
                tot, gacc = lp + thin, glp + gthin
                if self._correction is not None:
                    m, sd, b1, b2 = self._correction
                    u = (zs - m) / sd
                    gacc += (b1 + 2.0 * b2 * u) / sd
                ll, g = self.safe_log_likelihood(zs, self.batch, True)
                tot += phi * ll
                gacc += phi * g
                fin = np.isfinite(tot) & np.all(np.isfinite(gacc), axis=1)
                gacc[~fin] = 0.0
                grad[idx] = gacc
                ok[idx[~fin]] = False
                self.n_surrogate_calls += len(self.surrogate_past) + 1
                self.n_surrogate_row_evals += self.rows_surrogate * idx.size
        self.seconds += time.perf_counter() - t0
        return ok, grad
