"""Sample average approximation (SAA) of a :class:`~vvuq_twin.decisions.Decision`.

* ``method="lp"``: loss and constraint functions affine in ``d``, objective expected loss or
  superquantile, constraints buffered or superquantile: the Rockafellar--Uryasev linear
  program (``CVaR_a(f) = min_t t + E[(f - t)+]/(1 - a)`` with one auxiliary variable per draw),
  solved by :func:`scipy.optimize.linprog` (HiGHS) with sparse matrices.
* ``method="slsqp"``: any loss; :func:`scipy.optimize.minimize` (SLSQP) from the centre of the
  bounds, chance constraints written as quantile constraints
  ``g_(n - floor(eps n)) <= 0`` (order statistic), buffered ones as ``CVaR_{1-eps}(g) <= 0``.
  If SLSQP ends infeasible, :func:`scipy.optimize.differential_evolution` (seeded) retries.
* ``method="differential_evolution"``: the global, derivative-free search directly.

When no decision in the bounds meets the constraints, :class:`InfeasibleDecisionError` reports
the smallest achievable value of each constraint's risk figure (found by differential
evolution over the bounds).

The result reports the decision with the uncertainty of its risk figures: Monte Carlo standard
errors, and for chance constraints the Clopper--Pearson upper confidence bound on the violation
probability and the (Jeffreys) posterior probability that it is below ``epsilon``. Figures
computed on the optimisation draws are optimistic (the optimiser has fitted them); pass
``validation_samples`` (fresh draws) for honest out-of-sample figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import xarray as xr
from scipy import optimize, sparse, stats

from .._rng import RNGLike, seed_int
from ..risk import _array
from ..risk.measures import RiskEstimate, buffered_failure_probability, expected_loss, superquantile
from .spec import (
    Decision,
    DecisionSpecificationError,
    InfeasibleDecisionError,
)

__all__ = ["DecisionResult", "solve", "as_draws", "tightened_epsilon"]


@dataclass(frozen=True)
class DecisionResult:
    """The chosen decision and the uncertainty in its risk figures.

    Attributes
    ----------
    decision : xarray.DataArray
        Optimal decision over dim ``variable``.
    objective : RiskEstimate
        The objective (expected loss or superquantile) at the decision, with its MC error.
    constraints : xarray.Dataset
        Over dim ``constraint``: ``kind``, ``level`` (epsilon or alpha), ``bound``,
        ``estimate``, ``se``, ``upper_bound`` (one-sided, at ``confidence``; Clopper--Pearson
        for chance constraints), ``prob_satisfied`` (how sure we are the constraint holds),
        ``n_violations`` and ``effective_level`` (epsilon used in the SAA problem).
    method : str
        Solver used.
    message : str
        Solver message.
    n_samples : int
        Draws used to optimise.
    n_eval_samples : int
        Draws used for the reported figures.
    in_sample : bool
        Whether the figures were computed on the optimisation draws (optimistic).
    """

    decision: xr.DataArray
    objective: RiskEstimate
    constraints: xr.Dataset
    method: str
    message: str
    n_samples: int
    n_eval_samples: int
    in_sample: bool
    confidence: float = 0.95
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dataset(self) -> xr.Dataset:
        """One NetCDF-saveable Dataset with decision, objective and constraint figures."""
        obj = self.objective.to_xarray()
        ds = xr.Dataset({"decision": self.decision})
        for k in obj.data_vars:
            ds[f"objective_{k}"] = obj[k]
        ds = ds.merge(self.constraints)
        ds.attrs = {
            "method": self.method,
            "objective_measure": self.objective.measure,
            "n_samples": self.n_samples,
            "n_eval_samples": self.n_eval_samples,
            "in_sample": int(self.in_sample),
            "confidence": self.confidence,
        }
        return ds


def as_draws(samples: Any, sample_dims: str | Sequence[str] | None = None) -> np.ndarray:
    """Turn predictive draws into an array whose first axis indexes draws.

    A DataArray is stacked over ``sample_dims`` (default ``("chain", "draw")``), which become the
    first axis; remaining dims follow in order. NumPy input is returned as a float array.
    """
    if isinstance(samples, xr.DataArray):
        if sample_dims is None:
            if "chain" in samples.dims and "draw" in samples.dims:
                sample_dims = ("chain", "draw")
            else:
                raise DecisionSpecificationError(
                    f"The draws have dims {tuple(samples.dims)}; pass sample_dims naming the "
                    "dimension(s) that index predictive draws."
                )
        dims = (sample_dims,) if isinstance(sample_dims, str) else tuple(sample_dims)
        missing = [d for d in dims if d not in samples.dims]
        if missing:
            raise DecisionSpecificationError(
                f"sample_dims {dims} not found in the draws (missing {missing}); dims are {tuple(samples.dims)}."
            )
        st = samples.stack(__draw__=dims)
        rest = [d for d in st.dims if d != "__draw__"]
        arr = st.transpose("__draw__", *rest).values
    else:
        arr = np.asarray(samples, dtype=float)
    if arr.shape[0] == 0:
        raise DecisionSpecificationError("The predictive draws are empty; pass at least one draw.")
    if np.isnan(arr).any():
        raise DecisionSpecificationError(
            f"The predictive draws contain {int(np.isnan(arr).sum())} NaN value(s); drop or rerun "
            "the failed draws before optimising."
        )
    return arr


def tightened_epsilon(epsilon: float, n: int, confidence: float) -> float:
    """Largest ``k/n`` whose one-sided Clopper--Pearson upper bound is ``<= epsilon``.

    Using it as the sample level makes ``P(true violation <= epsilon)`` at least ``confidence``
    for a fixed decision evaluated on ``n`` fresh draws.
    """
    k = np.arange(n)
    upper = stats.beta.ppf(confidence, k + 1, n - k)
    ok = np.flatnonzero(upper <= epsilon)
    if ok.size == 0:
        n_min = math.ceil(math.log(1 - confidence) / math.log(1 - epsilon))
        raise DecisionSpecificationError(
            f"With n={n} draws no sample level certifies P(violation) <= {epsilon} at confidence "
            f"{confidence}; at least n={n_min} draws are needed."
        )
    return float(ok[-1] / n)


def _cvar_value(x: np.ndarray, alpha: float) -> float:
    return _array.superquantile_if(x, None, alpha)[0]


def _eval_fn(f: Any, d: np.ndarray, xi: np.ndarray, what: str) -> np.ndarray:
    out = np.asarray(f(d, xi), dtype=float).reshape(-1)
    if out.shape[0] != len(xi):
        raise DecisionSpecificationError(
            f"The {what} must return one value per draw, shape ({len(xi)},); got {out.shape}."
        )
    if not np.isfinite(out).all():
        raise DecisionSpecificationError(
            f"The {what} returned non-finite values at d={d.tolist()}."
        )
    return out


class _Problem:
    """Objective and constraint callables of the SAA problem on draws ``xi``."""

    def __init__(self, decision: Decision, xi: np.ndarray, eff_eps: dict[str, float]):
        self.dec, self.xi, self.eff_eps = decision, xi, eff_eps
        self.n = len(xi)

    def objective(self, d: np.ndarray) -> float:
        f = _eval_fn(self.dec.loss, d, self.xi, "loss")
        return float(f.mean()) if self.dec.risk == "expected" else _cvar_value(f, self.dec.alpha)

    def slack(self, c: Any, d: np.ndarray) -> float:
        """Constraint slack ``>= 0`` when satisfied."""
        gv = _eval_fn(c.g, d, self.xi, f"constraint {c.name!r}")
        if c.kind == "probability":
            k = int(math.floor(self.eff_eps[c.name] * self.n + 1e-9))
            j = self.n - k - 1
            return -float(np.partition(gv, j)[j])
        if c.kind == "buffered":
            return -_cvar_value(gv, 1 - c.epsilon)
        return float(c.bound) - _cvar_value(gv, c.alpha)

    def risk(self, c: Any, d: np.ndarray) -> float:
        """The constraint's risk figure (for the infeasibility report)."""
        gv = _eval_fn(c.g, d, self.xi, f"constraint {c.name!r}")
        if c.kind == "probability":
            return float(np.mean(gv > 0))
        if c.kind == "buffered":
            return _array.bpoe_if(gv, None, 0.0)[0]
        return _cvar_value(gv, c.alpha)

    def feasible(self, d: np.ndarray, tol: float = 1e-7) -> bool:
        lo, hi = self.dec.bounds.T
        if np.any(d < lo - tol) or np.any(d > hi + tol):
            return False
        for lc in self.dec.linear_constraints:
            v = np.atleast_2d(lc.A) @ d
            if np.any(v < np.asarray(lc.lb) - tol * (1 + np.abs(lc.lb))) or np.any(
                v > np.asarray(lc.ub) + tol * (1 + np.abs(lc.ub))
            ):
                return False
        for c in self.dec.constraints:
            s = self.slack(c, d)
            if s < -tol * (1 + abs(s)) and not (c.kind == "probability" and self._count_ok(c, d)):
                return False
        return True

    def _count_ok(self, c: Any, d: np.ndarray) -> bool:
        gv = _eval_fn(c.g, d, self.xi, f"constraint {c.name!r}")
        return int(np.sum(gv > 0)) <= int(math.floor(self.eff_eps[c.name] * self.n + 1e-9))


def _solve_lp(dec: Decision, xi: np.ndarray) -> tuple[np.ndarray | None, str]:
    k = len(dec.variables)
    n = len(xi)
    C, c = dec.loss.matrices(xi, k)  # type: ignore[union-attr]
    rows: list[sparse.spmatrix] = []
    rhs: list[np.ndarray] = []
    bounds: list[tuple[float | None, float | None]] = [(v.lower, v.upper) for v in dec.variables]
    cost = np.zeros(k)
    if dec.risk == "expected":
        cost = C.mean(axis=0)
    # collect CVaR blocks: (matrix G, offset h, level a, bound or None for objective)
    cvar_blocks: list[tuple[np.ndarray, np.ndarray, float, float | None]] = []
    if dec.risk == "superquantile":
        cvar_blocks.append((C, c, float(dec.alpha), None))
    for con in dec.constraints:
        G, h = con.g.matrices(xi, k)  # type: ignore[union-attr]
        a = 1 - con.epsilon if con.kind == "buffered" else con.alpha
        bound = 0.0 if con.kind == "buffered" else float(con.bound)
        cvar_blocks.append((G, h, a, bound))
    total_aux = sum(1 + n for _ in cvar_blocks)
    nv = k + total_aux
    obj = np.zeros(nv)
    obj[:k] = cost
    col = k
    for G, h, a, bound in cvar_blocks:
        t_col, v0 = col, col + 1
        # G_i d - t - v_i <= -h_i
        A = sparse.hstack(
            [
                sparse.csr_matrix(G),
                sparse.csr_matrix((n, t_col - k)),
                sparse.csr_matrix(-np.ones((n, 1))),
                sparse.csr_matrix((n, v0 - t_col - 1)),
                -sparse.identity(n, format="csr"),
                sparse.csr_matrix((n, nv - v0 - n)),
            ],
            format="csr",
        )
        rows.append(A)
        rhs.append(-h)
        bounds.append((None, None))
        bounds.extend([(0.0, None)] * n)
        if bound is None:
            obj[t_col] = 1.0
            obj[v0 : v0 + n] = 1.0 / ((1 - a) * n)
        else:
            r = np.zeros(nv)
            r[t_col] = 1.0
            r[v0 : v0 + n] = 1.0 / ((1 - a) * n)
            rows.append(sparse.csr_matrix(r))
            rhs.append(np.array([bound]))
        col = v0 + n
    assert col == nv
    A_eq_rows, b_eq = [], []
    for lc in dec.linear_constraints:
        A = np.atleast_2d(lc.A)
        lb = np.broadcast_to(np.asarray(lc.lb, dtype=float), A.shape[0])
        ub = np.broadcast_to(np.asarray(lc.ub, dtype=float), A.shape[0])
        pad = sparse.csr_matrix((1, nv - k))
        for i in range(A.shape[0]):
            row = sparse.hstack([sparse.csr_matrix(A[i : i + 1]), pad], format="csr")
            if lb[i] == ub[i]:
                A_eq_rows.append(row)
                b_eq.append(lb[i])
                continue
            if np.isfinite(ub[i]):
                rows.append(row)
                rhs.append(np.array([ub[i]]))
            if np.isfinite(lb[i]):
                rows.append(-row)
                rhs.append(np.array([-lb[i]]))
    A_ub = sparse.vstack(rows, format="csr") if rows else None
    b_ub = np.concatenate(rhs) if rhs else None
    A_eq = sparse.vstack(A_eq_rows, format="csr") if A_eq_rows else None
    res = optimize.linprog(
        obj, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=np.array(b_eq) if b_eq else None,
        bounds=bounds, method="highs",
    )
    if res.status == 0:
        return np.asarray(res.x[:k]), str(res.message)
    if res.status == 2:
        return None, str(res.message)
    raise DecisionSpecificationError(f"The CVaR linear program failed: {res.message}")


def _nonlinear_constraints(prob: _Problem) -> list[Any]:
    cons: list[Any] = [
        optimize.NonlinearConstraint(lambda d, c=c: prob.slack(c, d), 0.0, np.inf)
        for c in prob.dec.constraints
    ]
    cons.extend(prob.dec.linear_constraints)
    return cons


def _solve_slsqp(prob: _Problem, x0: np.ndarray) -> tuple[np.ndarray, str]:
    cons = [{"type": "ineq", "fun": (lambda d, c=c: prob.slack(c, d))} for c in prob.dec.constraints]
    cons += list(prob.dec.linear_constraints)
    res = optimize.minimize(
        prob.objective, x0, method="SLSQP", bounds=optimize.Bounds(*prob.dec.bounds.T),
        constraints=cons, options={"maxiter": 500, "ftol": 1e-10},
    )
    d = np.clip(res.x, *prob.dec.bounds.T)
    return d, f"SLSQP: {res.message}"


def _solve_de(prob: _Problem, seed: int, x0: np.ndarray | None) -> tuple[np.ndarray, str]:
    res = optimize.differential_evolution(
        prob.objective, prob.dec.bounds, constraints=_nonlinear_constraints(prob), seed=seed,
        tol=1e-8, maxiter=300, polish=False, x0=x0,
    )
    return np.asarray(res.x), f"differential_evolution: {res.message}"


def _smallest_risks(prob: _Problem, seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    best: dict[str, float] = {}
    argmin: dict[str, np.ndarray] = {}
    centre = prob.dec.bounds.mean(axis=1)
    for c in prob.dec.constraints:
        res = optimize.differential_evolution(
            lambda d, c=c: prob.risk(c, d), prob.dec.bounds,
            constraints=list(prob.dec.linear_constraints), seed=seed, tol=1e-10, maxiter=200,
            polish=False,
        )
        cand = [(float(res.fun), np.asarray(res.x))]
        if not prob.dec.linear_constraints:
            cand.append((prob.risk(c, centre), centre))
            for corner in (prob.dec.bounds[:, 0], prob.dec.bounds[:, 1]):
                cand.append((prob.risk(c, corner), corner))
        val, x = min(cand, key=lambda t: t[0])
        best[c.name], argmin[c.name] = val, x
    return best, argmin


def _raise_infeasible(prob: _Problem, seed: int, message: str) -> None:
    best, argmin = _smallest_risks(prob, seed)
    parts = []
    for c in prob.dec.constraints:
        if c.kind == "probability":
            req = f"P(g > 0) <= {prob.eff_eps[c.name]:.4g}"
            what = "smallest achievable violation probability"
        elif c.kind == "buffered":
            req = f"bPOF <= {c.epsilon:.4g}"
            what = "smallest achievable buffered failure probability"
        else:
            req = f"CVaR_{c.alpha:g} <= {c.bound:.4g}"
            what = "smallest achievable superquantile"
        parts.append(
            f"constraint {c.name!r} ({req}): {what} is {best[c.name]:.4g} at "
            f"d={np.round(argmin[c.name], 6).tolist()}"
        )
    raise InfeasibleDecisionError(
        f"No decision within the bounds satisfies the risk constraints on {prob.n} draws "
        f"({message}). " + "; ".join(parts) + ". Relax epsilon (or the bound) to at least the "
        "smallest achievable risk, widen the variable bounds, or change the design.",
        best,
        argmin,
    )


def _report(
    dec: Decision, d: np.ndarray, xi: np.ndarray, confidence: float, eff_eps: dict[str, float]
) -> tuple[RiskEstimate, xr.Dataset]:
    loss = _eval_fn(dec.loss, d, xi, "loss")
    if dec.risk == "expected":
        obj = expected_loss(loss, confidence=confidence)
    else:
        obj = superquantile(loss, dec.alpha, confidence=confidence)
    z1 = float(stats.norm.ppf(confidence))
    rows: dict[str, list[Any]] = {k: [] for k in (
        "kind", "level", "bound", "estimate", "se", "upper_bound", "prob_satisfied",
        "n_violations", "effective_level")}
    n = len(xi)
    for c in dec.constraints:
        gv = _eval_fn(c.g, d, xi, f"constraint {c.name!r}")
        k = int(np.sum(gv > 0))
        rows["kind"].append(c.kind)
        rows["n_violations"].append(k)
        if c.kind == "probability":
            p = k / n
            rows["level"].append(c.epsilon)
            rows["bound"].append(c.epsilon)
            rows["estimate"].append(p)
            rows["se"].append(math.sqrt(p * (1 - p) / n))
            rows["upper_bound"].append(float(stats.beta.ppf(confidence, k + 1, n - k)) if k < n else 1.0)
            rows["prob_satisfied"].append(float(stats.beta.cdf(c.epsilon, k + 0.5, n - k + 0.5)))
            rows["effective_level"].append(eff_eps[c.name])
            continue
        if c.kind == "buffered":
            r = buffered_failure_probability(gv, 0.0, confidence=confidence)
            lim = c.epsilon
            rows["level"].append(c.epsilon)
            rows["effective_level"].append(c.epsilon)
        else:
            r = superquantile(gv, c.alpha, confidence=confidence)
            lim = float(c.bound)
            rows["level"].append(c.alpha)
            rows["effective_level"].append(c.alpha)
        rows["bound"].append(lim)
        rows["estimate"].append(r.estimate)
        rows["se"].append(r.se)
        rows["upper_bound"].append(r.estimate + z1 * r.se)
        if r.se > 0:
            rows["prob_satisfied"].append(float(stats.norm.cdf((lim - r.estimate) / r.se)))
        else:
            rows["prob_satisfied"].append(float(r.estimate <= lim + 1e-12))
    names = [c.name for c in dec.constraints]
    ds = xr.Dataset(
        {k: ("constraint", np.asarray(v, dtype=object if k == "kind" else float)) for k, v in rows.items()},
        coords={"constraint": names},
    )
    ds["kind"] = ds["kind"].astype(str)
    return obj, ds


def solve(
    decision: Decision,
    samples: Any,
    *,
    method: Literal["auto", "lp", "slsqp", "differential_evolution"] = "auto",
    validation_samples: Any = None,
    sample_dims: str | Sequence[str] | None = None,
    confidence: float = 0.95,
    x0: Sequence[float] | None = None,
    rng: RNGLike = None,
) -> DecisionResult:
    """Solve a decision problem by sample average approximation over predictive draws.

    Parameters
    ----------
    decision : Decision
        The declared problem.
    samples : array_like (n, ...) or xarray.DataArray
        Predictive draws ``xi`` handed to the loss and constraint functions.
    method : {"auto", "lp", "slsqp", "differential_evolution"}
        ``"auto"`` uses the CVaR linear program when :attr:`Decision.is_linear`, else SLSQP
        (with a differential-evolution retry when SLSQP ends infeasible).
    validation_samples : array_like or DataArray, optional
        Fresh draws for the reported risk figures (recommended: in-sample figures are
        optimistic).
    sample_dims : str or sequence of str, optional
        Sample dims of DataArray draws (default ``("chain", "draw")``).
    confidence : float
        Level of the reported bounds and of the chance-constraint tightening.
    x0 : sequence of float, optional
        Start for SLSQP (default: centre of the bounds).
    rng : Generator, int or None
        Seeds differential evolution.

    Returns
    -------
    DecisionResult

    Raises
    ------
    InfeasibleDecisionError
        No decision in the bounds meets the constraints; the error reports the smallest
        achievable risk of each constraint.
    """
    if not isinstance(decision, Decision):
        raise DecisionSpecificationError(f"solve expects a Decision; got {type(decision).__name__}.")
    if method not in ("auto", "lp", "slsqp", "differential_evolution"):
        raise DecisionSpecificationError(
            f"The 'method' parameter of solve must be one of 'auto', 'lp', 'slsqp', "
            f"'differential_evolution'; got {method!r}."
        )
    confidence = _array.check_alpha(confidence, "solve", "confidence")
    xi = as_draws(samples, sample_dims)
    n = len(xi)
    seed = seed_int(rng)
    eff_eps: dict[str, float] = {}
    for c in decision.constraints:
        if c.kind == "probability":
            eff_eps[c.name] = (
                c.epsilon if c.confidence is None else tightened_epsilon(c.epsilon, n, c.confidence)
            )
    prob = _Problem(decision, xi, eff_eps)
    if method == "auto":
        method = "lp" if decision.is_linear else "slsqp"
    if method == "lp":
        if not decision.is_linear:
            raise DecisionSpecificationError(
                "method='lp' needs the loss and every constraint function declared as "
                "AffineInDecision, and no ChanceConstraint (a chance constraint is not convex; "
                "use BufferedConstraint for an LP, or method='slsqp')."
            )
        d, msg = _solve_lp(decision, xi)
        if d is None:
            _raise_infeasible(prob, seed, f"linprog: {msg}")
    else:
        start = decision.bounds.mean(axis=1) if x0 is None else np.asarray(x0, dtype=float)
        if method == "slsqp":
            d, msg = _solve_slsqp(prob, start)
            if not prob.feasible(d, tol=1e-6):
                d, msg2 = _solve_de(prob, seed, None)
                msg = f"{msg}; infeasible, retried with {msg2}"
        else:
            d, msg = _solve_de(prob, seed, None)
        if not prob.feasible(d, tol=1e-6):
            _raise_infeasible(prob, seed, msg)
    assert d is not None
    eval_xi = xi if validation_samples is None else as_draws(validation_samples, sample_dims)
    obj, cons = _report(decision, d, eval_xi, confidence, eff_eps)
    da = xr.DataArray(d, dims="variable", coords={"variable": decision.names}, name="decision")
    return DecisionResult(
        da, obj, cons, method, msg, n, len(eval_xi), validation_samples is None, confidence,
        {"seed": seed},
    )

