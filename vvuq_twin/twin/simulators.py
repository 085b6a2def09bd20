"""Simulators eta(x, theta): the physics part of a twin.

Four kinds share one small interface (:class:`Simulator`):

* :class:`PytensorSimulator` - a pytensor-traceable function; gradients flow to NUTS.
* :class:`ODESimulator` - an ODE integrated by the Dormand-Prince 5(4) pair in
  ``pytensor.scan`` on one global time grid with a bounded step; gradients flow, the embedded
  error estimate flags stiff draws (:meth:`Simulator.accuracy`) and the step is a verifiable
  discretisation parameter (observed order 5).
* :class:`BlackBoxSimulator` - any Python callable wrapped as a pytensor ``Op``; with a
  user-supplied Jacobian it supports NUTS, without one calibration picks a gradient-free
  sampler (SMC) and says why.
* :class:`SurrogateSimulator` - a fitted surrogate (GP / PCE) exposing
  ``to_pytensor(X) -> (mean, var)``; its predictive variance is carried into the likelihood.

A simulator is called as ``sim(x, params)`` with ``x`` a ``(n, d)`` tensor of inputs and
``params`` a mapping from parameter name to a tensor that is a scalar (global parameter) or
has shape ``(n,)`` (per-unit parameter indexed by each observation's unit).
"""

from __future__ import annotations

import abc
import hashlib
import inspect
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ..exceptions import SimulatorError, TwinSpecificationError
from ._blas import explain_missing_blas

explain_missing_blas()  # PyTensor's pip-install BLAS warning, explained once

__all__ = [
    "Simulator",
    "PytensorSimulator",
    "ODESimulator",
    "BlackBoxSimulator",
    "SurrogateSimulator",
    "SurrogateLike",
    "source_hash",
]


def _value_digest(v: Any, depth: int) -> str:
    """Stable digest of a value a simulator closes over (arrays by content, callables by source)."""
    if isinstance(v, np.ndarray):
        return f"ndarray{v.dtype.str}{v.shape}:" + hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
    if isinstance(v, (bool, int, float, complex, str, bytes, type(None), np.generic)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return type(v).__name__ + "(" + ",".join(_value_digest(e, depth) for e in v) + ")"
    if isinstance(v, dict):
        return "dict(" + ",".join(f"{k!r}:{_value_digest(e, depth)}" for k, e in sorted(v.items(), key=lambda kv: repr(kv[0]))) + ")"
    if callable(v) and depth < 3:
        return source_hash(v, _depth=depth + 1)
    return f"<{type(v).__module__}.{type(v).__qualname__}>"  # stable, content not hashed


def _callable_digest(obj: Any, depth: int) -> str:
    """Digest of a callable without source or code object (an instance with ``__call__``, a
    ``functools.partial``): never its repr when that holds a memory address (``<... at 0x7f..>``),
    which differs between processes and would make every resume fingerprint miss."""
    import functools

    if isinstance(obj, functools.partial):
        return ("partial(" + source_hash(obj.func, depth + 1) + "," + _value_digest(obj.args, depth + 1)
                + "," + _value_digest(dict(obj.keywords), depth + 1) + ")")
    r = repr(obj)
    if not re.search(r"0x[0-9a-fA-F]{4,}", r):
        return r
    cls = type(obj)
    try:
        cls_src = inspect.getsource(cls)
    except (OSError, TypeError):
        cls_src = ""
    state = getattr(obj, "__dict__", None)
    state_digest = _value_digest(dict(state), depth + 1) if isinstance(state, dict) and depth < 3 else ""
    return f"<{cls.__module__}.{cls.__qualname__}>" + hashlib.sha256(cls_src.encode()).hexdigest() + state_digest


def source_hash(obj: Any, _depth: int = 0) -> str:
    """Stable hash of a callable: its source code (falls back to its bytecode, then its repr) and
    the values it closes over or takes as defaults (arrays by content, callables by source), so
    that two simulators with the same code but different data (e.g. forcing series) differ."""
    if not callable(obj):
        return hashlib.sha256(_value_digest(obj, _depth).encode()).hexdigest()
    try:
        src = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        src = code.co_code.hex() if code is not None else _callable_digest(obj, _depth)
    h = hashlib.sha256(src.encode())
    cells = getattr(obj, "__closure__", None) or ()
    for cell in cells:
        try:
            h.update(_value_digest(cell.cell_contents, _depth).encode())
        except ValueError:  # empty cell
            h.update(b"<empty>")
    for d in getattr(obj, "__defaults__", None) or ():
        h.update(_value_digest(d, _depth).encode())
    return h.hexdigest()


class Simulator(abc.ABC):
    """Base class: a simulator maps inputs ``x`` (n, d) and parameters to outputs (n,)."""

    #: whether pytensor can differentiate the simulator (NUTS needs it)
    has_gradient: bool = True
    #: a short reason shown when no gradient is available
    no_gradient_reason: str = ""

    @abc.abstractmethod
    def __call__(self, x: pt.TensorVariable, params: Mapping[str, pt.TensorVariable]):
        """Simulator output (n,) at inputs ``x`` (n, d)."""

    def predictive_variance(self, x, params) -> pt.TensorVariable | None:
        """Extra variance of the simulator output (surrogates); ``None`` for exact simulators."""
        return None

    def accuracy(self, x, params) -> pt.TensorVariable | None:
        """Per-row numerical accuracy indicator (``<= 1``: within tolerance), or ``None``.

        Simulators with an error estimate (:class:`ODESimulator`) return one; calibration and
        prediction record it as ``eta_accuracy`` and report draws where it exceeds 1.
        """
        return None

    def spec(self) -> dict[str, Any]:
        """Description used in the declaration hash."""
        return {"kind": type(self).__name__}


@dataclass
class PytensorSimulator(Simulator):
    """A pytensor-traceable simulator ``fn(x, params) -> tensor (n,)``.

    Parameters
    ----------
    fn : callable
        Written with ``pytensor.tensor`` operations (NumPy-like), e.g.
        ``lambda x, p: p["theta"] * x[:, 0]``.
    name : str
        Human-readable name.
    """

    fn: Callable[..., Any]
    name: str = "simulator"

    def __call__(self, x, params):
        return self.fn(x, params)

    def spec(self) -> dict[str, Any]:
        return {"kind": "pytensor", "name": self.name, "source": source_hash(self.fn)}


# Dormand & Prince (1980) RK5(4)7M tableau (the pair of scipy's RK45 and MATLAB's ode45)
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
#: 5th-order weights (propagated solution; also the last stage row, so FSAL holds)
_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
#: 5th minus 4th-order weights over the 7 stages (the embedded local error estimate)
_DP_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


def _n_positional(fn: Callable[..., Any]) -> int | None:
    """Number of positional parameters of ``fn`` (None when it takes ``*args``)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    n = 0
    for prm in sig.parameters.values():
        if prm.kind == prm.VAR_POSITIONAL:
            return None
        if prm.kind in (prm.POSITIONAL_ONLY, prm.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


def _constant_value(x: Any) -> np.ndarray | None:
    """The numeric value of ``x`` when it is a constant (or a graph of constants only)."""
    if isinstance(x, np.ndarray):
        return x
    from pytensor.graph.basic import Constant

    try:
        from pytensor.graph.traversal import graph_inputs
    except ImportError:  # older pytensor
        from pytensor.graph.basic import graph_inputs

    if isinstance(x, Constant):
        return np.asarray(x.data)
    try:
        if all(isinstance(v, Constant) for v in graph_inputs([x])):
            return np.asarray(x.eval())
    except Exception:  # noqa: BLE001 - not evaluable: the caller reports
        return None
    return None


def _gather_index(v: Any) -> np.ndarray | None:
    """``idx`` when ``v`` is ``source[idx]`` with a constant integer index vector, else None."""
    from pytensor.graph.basic import Constant
    from pytensor.tensor.subtensor import AdvancedSubtensor, AdvancedSubtensor1

    node = getattr(v, "owner", None)
    if node is None or not isinstance(node.op, (AdvancedSubtensor, AdvancedSubtensor1)):
        return None
    if len(node.inputs) != 2 or not isinstance(node.inputs[1], Constant):
        return None
    idx = np.asarray(node.inputs[1].data)
    return idx if idx.ndim == 1 and idx.dtype.kind in "iu" else None


def _trajectories(xv: np.ndarray, time_column: int, params: Mapping[str, Any]):
    """``(first row of each trajectory, trajectory of each row)``.

    Two rows are one trajectory when their non-time inputs are equal and every per-row
    parameter is provably the same value for both: it is ``source[idx]`` with a constant index
    (a per-unit parameter indexed by the unit of each observation) and the indices agree.
    Otherwise every row is its own trajectory.
    """
    n = xv.shape[0]
    keys = [xv[:, j] for j in range(xv.shape[1]) if j != time_column]
    for v in params.values():
        v = pt.as_tensor_variable(v)
        if v.ndim == 0:
            continue
        gi = _gather_index(v)
        if gi is None or gi.shape != (n,):
            return np.arange(n), np.arange(n)
        keys.append(gi.astype(float))
    if not keys:
        return np.zeros(1, dtype=int), np.zeros(n, dtype=int)
    _, first, traj = np.unique(np.column_stack(keys), axis=0, return_index=True, return_inverse=True)
    return first.astype(int), np.asarray(traj, dtype=int).ravel()


@dataclass
class ODESimulator(Simulator):
    """ODE ``dy/dt = rhs(t, y, params[, x])`` integrated on one global time grid.

    The observation time is input column ``time_column`` of ``x``; each row of ``x`` belongs to
    one trajectory (its parameter values and covariates, e.g. its unit's dose; rows of one unit
    with the same covariates share a trajectory, which is integrated once). All trajectories are
    stepped together over one grid from ``t0`` to the latest observation time: the grid holds
    every observation time as a node and subdivides each gap between nodes into equal steps no
    longer than ``max_step`` - so the step is bounded over the whole time range, late
    observations get the same small step as early ones, and each row's value is read off the
    grid at its own time.

    The scheme is the Dormand-Prince 5(4) Runge-Kutta pair (the pair of scipy's ``RK45``) on
    that fixed grid, written in ``pytensor.scan`` so gradients flow to NUTS. Its embedded
    4th-order solution gives a local error estimate at every step; the largest scaled error
    ``max_k ||err_k / (atol + rtol |y_k|)||_rms`` up to each observation is that observation's
    :meth:`accuracy` (``<= 1``: within tolerance). A stiff parameter draw (e.g. an absorption
    rate so large that ``rate * max_step`` leaves the stability region) does not blow up
    silently: its accuracy exceeds 1, calibration raises
    :class:`~vvuq_twin.exceptions.SimulatorInstabilityError` when posterior draws are affected,
    and :func:`~vvuq_twin.predict` counts and flags the affected predictive draws.

    A fast transient right after ``t0`` (a rapidly absorbed oral dose, a fast initial decay) is
    resolved by a *graded* grid rather than a uniformly small step: with ``first_step`` set,
    the step bound is ``h(t) = min(max_step, first_step + (step_growth - 1) (t - t0))``, so
    steps start at ``first_step`` and grow geometrically by ``step_growth`` per step. A
    transient ``exp(-k t)`` must be followed with ``k h`` of order 1 only while it is above the
    tolerance (``k t`` below ~``log(1/rtol)``, a few units); the graded bound gives ``k h(t) <=
    k first_step + (step_growth - 1) k t``, at most ~2 over that window for every ``k <= 1 /
    first_step`` when ``step_growth <= 1.25``, at the cost of ``~ log(max_step / first_step) /
    log(step_growth)`` extra steps (about 30 for ``first_step = 1e-3``, ``max_step = 0.25``).
    This resolves fast *forcing* (e.g. an exactly solved depot ``dose * exp(-ka t)`` driving a
    compartment; checked against the closed form for ``ka`` up to 300/h in the tests). It does
    not lift the *stability* limit of the explicit scheme: a fast mode kept as a state still
    needs ``k * max_step`` below ~3 at every step, long after it has decayed, and the error
    check flags draws that break it. Without ``first_step`` every gap is split uniformly, and
    the cure for a flagged draw is a smaller ``max_step`` (or tighter priors). The check is a
    *local* error estimate: for a forcing pulse much faster than a uniform grid it can
    under-report (measured: ``ka = 36``/h depot forcing on a uniform 0.25-h grid, error
    0.8 mg/L at accuracy 0.74), which is another reason to grade the grid for such inputs.

    Parameters
    ----------
    rhs : callable
        ``rhs(t, y, params) -> dy/dt`` or ``rhs(t, y, params, x)``. ``t`` is a scalar (the grid
        time), ``y`` a tensor ``(n, n_states)``, per-unit parameters arrive with shape ``(n,)``
        (one value per row) and ``x`` is the ``(n, d)`` input tensor, so a per-row covariate
        such as the dose is ``x[:, 1]``.
    y0 : callable
        ``y0(params) -> tensor (n, n_states)`` or ``(n_states,)``, or ``y0(params, x)``: the
        initial state at ``t0`` (e.g. ``pt.stack([x[:, 1], 0 * x[:, 1]], axis=1)`` for a dose
        in the first compartment).
    t0 : float
        Initial time; observation times must be ``>= t0``.
    max_step : float, optional
        Longest step of the grid. Default: ``(t_max - t0) / n_steps``.
    n_steps : int
        Used only for the default ``max_step``: the number of steps over the whole time range
        (default 200).
    output : callable, optional
        ``output(y, params) -> (n,)`` or ``output(y, params, x)``: the observable from the state
        ``y`` ``(n, n_states)`` at each row's own time (per-unit parameters with shape
        ``(n,)``); default: the first state ``y[:, 0]``. E.g. a concentration
        ``lambda y, p: y[:, 1] / p["V"]``.
    first_step : float, optional
        First step after ``t0`` of a graded grid (see above; default: no grading, every gap is
        split into equal steps no longer than ``max_step``). Resolves rates up to
        ``~ 1 / first_step`` right after ``t0``.
    step_growth : float
        Growth factor per step of the graded grid (default 1.2; must be in ``(1, 1.25]``: faster
        growth outruns a transient before it has decayed, and is refused).
    time_column : int
        Column of ``x`` holding the time.
    rtol, atol : float
        Tolerances of the local error check, relative to the state and absolute (default
        1e-3 and 1e-6, scipy's ``solve_ivp`` defaults; set ``atol`` to the scale at which a
        state is negligible).
    name : str

    Examples
    --------
    One-compartment pharmacokinetics with first-order absorption, dose per row in column 1:

    >>> import pytensor.tensor as pt
    >>> sim = ODESimulator(
    ...     rhs=lambda t, y, p: pt.stack([-p["ka"] * y[:, 0],
    ...                                   p["ka"] * y[:, 0] - p["ke"] * y[:, 1]], axis=1),
    ...     y0=lambda p, x: pt.stack([x[:, 1], pt.zeros_like(x[:, 1])], axis=1),
    ...     output=lambda y, p: y[:, 1] / p["V"], max_step=0.1)
    """

    rhs: Callable[..., Any]
    y0: Callable[..., Any]
    t0: float = 0.0
    n_steps: int = 200
    output: Callable[..., Any] | None = None
    time_column: int = 0
    name: str = "ode"
    max_step: float | None = None
    rtol: float = 1e-3
    atol: float = 1e-6
    first_step: float | None = None
    step_growth: float = 1.2

    def __post_init__(self) -> None:
        if self.first_step is not None and not (np.isfinite(self.first_step) and self.first_step > 0):
            raise TwinSpecificationError(
                f"ODESimulator: first_step must be a positive number (or None for no grading), "
                f"got {self.first_step!r}."
            )
        if not (1.0 < float(self.step_growth) <= 1.25):
            raise TwinSpecificationError(
                f"ODESimulator: step_growth must be in (1, 1.25] (larger factors outgrow a fast "
                f"transient before it has decayed), got {self.step_growth!r}."
            )
        if int(self.n_steps) < 1:
            raise TwinSpecificationError(f"ODESimulator: n_steps must be >= 1, got {self.n_steps}.")
        if self.max_step is not None and not (np.isfinite(self.max_step) and self.max_step > 0):
            raise TwinSpecificationError(
                f"ODESimulator: max_step must be a positive number, got {self.max_step!r}."
            )
        if not (self.rtol > 0 and self.atol > 0):
            raise TwinSpecificationError(
                f"ODESimulator: rtol and atol must be > 0, got rtol={self.rtol}, atol={self.atol}."
            )
        self._cache: dict[Any, Any] = {}

    #: formal order of the propagated Dormand-Prince solution (what verification checks)
    formal_order: ClassVar[float] = 5.0

    def verification_solver(self, twin: Any, data: Any) -> tuple[Callable[[float], np.ndarray], float]:
        """``(solve(h), formal_order)`` for code verification of *this* simulator object.

        ``solve(h)`` evaluates the simulator at the inputs of ``data`` (e.g. the calibration
        data) with the twin's prior reference parameter values and ``max_step = h``: the
        discretisation the calibration runs, refined. Used by
        :class:`vvuq_twin.loop.Verify` (observed order of accuracy).
        """
        import dataclasses

        import pytensor

        n = int(data.n)
        params = {}
        for p in twin.parameters:
            v = float(p.reference_value())
            params[p.name] = np.full(n, v) if p.per_unit else np.float64(v)
        X = np.asarray(data.x, dtype=float)

        def _refined(h: float) -> "ODESimulator":
            # a graded grid is refined as a whole: the bound h(t) = min(max_step, first_step +
            # (step_growth - 1) t) is scaled by h / max_step - first_step *and* the growth slope
            # (with the slope fixed, the steps of the graded stretch would not refine)
            sim = dataclasses.replace(self, max_step=float(h))
            if self.first_step is not None:
                r = float(h) / float(self.max_step if self.max_step is not None else h)
                sim.first_step = float(self.first_step) * r
                sim.step_growth = 1.0 + (float(self.step_growth) - 1.0) * r  # private copy
            return sim

        def solve(h: float) -> np.ndarray:
            sim = _refined(h)
            out = sim(pt.as_tensor_variable(X), {k: pt.as_tensor_variable(v) for k, v in params.items()})
            return np.asarray(pytensor.function([], out, mode="FAST_COMPILE")(), dtype=float)

        def effective_h(h: float) -> float:
            # observation times are grid nodes, so a gap is split into ceil(gap / h) steps: the
            # longest step actually taken, not h, is the refinement parameter
            grid, _ = _refined(h).time_grid(X[:, self.time_column])
            return float(np.max(np.diff(grid)))

        solve.effective_h = effective_h  # type: ignore[attr-defined]
        return solve, float(self.formal_order)

    # ------------------------------------------------------------------ grid
    def time_grid(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The global grid for observation ``times``: ``(grid (K+1,), index of each time)``.

        Every observation time is a node; each gap between consecutive nodes is split into
        ``ceil(gap / max_step)`` equal steps, or, with ``first_step`` set, into steps no longer
        than the graded bound ``h(t) = min(max_step, first_step + (step_growth - 1) (t - t0))``.
        """
        times = np.asarray(times, dtype=float)
        if not np.all(np.isfinite(times)):
            raise SimulatorError(f"ODESimulator {self.name!r}: observation times contain NaN/inf.")
        if np.any(times < self.t0):
            bad = np.flatnonzero(times < self.t0)
            raise SimulatorError(
                f"ODESimulator {self.name!r}: observation time(s) {times[bad[:5]].tolist()} (rows "
                f"{bad[:5].tolist()}{', ...' if bad.size > 5 else ''}) precede t0={self.t0}; "
                "the ODE is integrated forward from t0."
            )
        nodes = np.unique(np.concatenate([[float(self.t0)], times]))
        span = float(nodes[-1] - nodes[0])
        h_max = float(self.max_step) if self.max_step is not None else (
            span / int(self.n_steps) if span > 0 else 1.0)
        pieces = [nodes[:1]]
        for a, b in zip(nodes[:-1], nodes[1:]):
            if self.first_step is None or a - self.t0 >= (h_max - self.first_step) / (self.step_growth - 1):
                k = max(1, int(np.ceil((b - a) / h_max - 1e-12)))
                pieces.append(np.linspace(a, b, k + 1)[1:])
                continue
            pts, t = [], float(a)
            g = float(self.step_growth) - 1.0
            while True:
                h = min(h_max, float(self.first_step) + g * (t - float(self.t0)))
                if t + h >= b - 1e-12 * max(1.0, abs(b)):
                    break
                t += h
                pts.append(t)
            pts.append(float(b))
            pieces.append(np.asarray(pts))
        grid = np.concatenate(pieces)
        idx = np.searchsorted(grid, times)
        return grid, idx

    # ------------------------------------------------------------------ integration
    def _call_rhs(self, t, y, p, x):
        return self.rhs(t, y, p, x) if self._takes_x(self.rhs, 3) else self.rhs(t, y, p)

    @staticmethod
    def _takes_x(fn: Callable[..., Any], base: int) -> bool:
        n = _n_positional(fn)
        return n is None or n > base

    def _integrate(self, x, params):
        # one scan per (inputs, parameters): __call__ and accuracy() share it
        hit = self._cache.get("last")
        if (hit is not None and hit[0] is x and list(hit[1]) == list(params)
                and all(a is b for a, b in zip(hit[1].values(), params.values()))):
            return hit[2]
        xv = _constant_value(x)
        if xv is None:
            raise SimulatorError(
                f"ODESimulator {self.name!r} needs numeric observation times to build its time "
                "grid, but the inputs are a symbolic tensor. Pass the inputs as a NumPy array "
                "(or a constant tensor)."
            )
        xv = np.asarray(xv, dtype=float)
        grid, idx = self.time_grid(xv[:, self.time_column])
        n_rows = xv.shape[0]
        x_rows = pt.as_tensor_variable(x)
        # rows that are the same trajectory (same covariates, same unit's parameters) are
        # integrated once: a hierarchical twin has one trajectory per unit, not per observation
        first, traj = _trajectories(xv, self.time_column, params)
        n = first.size
        names = list(params)
        vals = [pt.as_tensor_variable(params[k]) for k in names]
        vals = [v[first] if v.ndim >= 1 else v for v in vals]
        x_t = x_rows[first]
        p_traj = dict(zip(names, vals))
        y0 = pt.as_tensor_variable(self.y0(p_traj, x_t) if self._takes_x(self.y0, 1) else self.y0(p_traj))
        if y0.ndim == 1:
            y0 = pt.ones((n, 1)) * y0[None, :]
        y0 = y0.astype("float64")
        rtol, atol = float(self.rtol), float(self.atol)

        def step(t, h, y, k1, err_max, x_s, *param_vals):
            p = dict(zip(names, param_vals))
            ks = [k1]
            for i in range(1, 6):
                yi = y + h * sum(a * kj for a, kj in zip(_DP_A[i], ks) if a != 0.0)
                ks.append(self._call_rhs(t + _DP_C[i] * h, yi, p, x_s))
            y_new = y + h * sum(b * kj for b, kj in zip(_DP_B, ks) if b != 0.0)
            k7 = self._call_rhs(t + h, y_new, p, x_s)
            ks.append(k7)
            err = h * sum(e * kj for e, kj in zip(_DP_E, ks) if e != 0.0)
            scale = atol + rtol * pt.maximum(pt.abs(y), pt.abs(y_new))
            # abs() before sqr(): with one state, PyTensor (2.38) rewrites sqrt(mean(sqr(r)))
            # over the length-1 axis into NaN for r < 0, which read as 'beyond tolerance'
            e_rms = pt.sqrt(pt.mean(pt.sqr(pt.abs(err / scale)), axis=1))
            e_rms = pt.switch(pt.isnan(e_rms), np.inf, e_rms)
            return y_new, k7, pt.maximum(err_max, e_rms)

        k1_0 = pt.as_tensor_variable(self._call_rhs(float(grid[0]), y0, p_traj, x_t))
        k1_0 = (pt.zeros_like(y0) + k1_0).astype("float64")
        scan_kw = dict(
            sequences=[pt.as_tensor_variable(grid[:-1]), pt.as_tensor_variable(np.diff(grid))],
            outputs_info=[y0, k1_0, pt.zeros((n,), dtype="float64")],
            non_sequences=[x_t, *vals],
            strict=False,
        )
        if "return_updates" in inspect.signature(pytensor.scan).parameters:
            ys, _, errs = pytensor.scan(step, return_updates=False, **scan_kw)
        else:  # older pytensor
            (ys, _, errs), _ = pytensor.scan(step, **scan_kw)
        all_y = pt.concatenate([y0[None], ys], axis=0)
        all_e = pt.concatenate([pt.zeros((1, n), dtype="float64"), errs], axis=0)
        y_at = all_y[idx, traj]
        err_at = all_e[idx, traj]
        if self.output is None:
            eta = y_at[:, 0]
        elif self._takes_x(self.output, 2):
            eta = self.output(y_at, params, x_rows)
        else:
            eta = self.output(y_at, params)
        out = (eta, err_at)
        self._cache = {"last": (x, dict(params), out)}
        return out

    def __call__(self, x, params):
        return self._integrate(x, params)[0]

    def accuracy(self, x, params):
        """Largest scaled local error estimate up to each row's time (``<= 1``: within tolerance)."""
        return self._integrate(x, params)[1]

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "ode",
            "name": self.name,
            "scheme": "dopri5-global-grid",
            "rhs": source_hash(self.rhs),
            "y0": source_hash(self.y0),
            "output": source_hash(self.output) if self.output is not None else None,
            "t0": float(self.t0),
            "n_steps": int(self.n_steps),
            "max_step": None if self.max_step is None else float(self.max_step),
            "rtol": float(self.rtol),
            "atol": float(self.atol),
            "time_column": int(self.time_column),
            **({} if self.first_step is None else {
                "first_step": float(self.first_step), "step_growth": float(self.step_growth)}),
        }


class _BlackBoxOp(Op):
    """pytensor Op around a NumPy simulator; params arrive as one float vector."""

    __props__ = ("sim_id",)

    def __init__(self, sim: "BlackBoxSimulator", sim_id: int):
        self.sim = sim
        self.sim_id = sim_id

    def make_node(self, x, theta):
        x = pt.as_tensor_variable(x)
        theta = pt.as_tensor_variable(theta)
        return Apply(self, [x, theta], [pt.dvector()])

    def perform(self, node, inputs, outputs):
        x, theta = inputs
        outputs[0][0] = self.sim._evaluate(np.asarray(x), np.asarray(theta))

    def grad(self, inputs, output_grads):
        if self.sim.jacobian is None:
            raise SimulatorError(
                f"BlackBoxSimulator {self.sim.name!r} has no gradient. Pass `jacobian=` or "
                "calibrate with method='smc' (gradient-free)."
            )
        x, theta = inputs
        (g,) = output_grads
        jac = _BlackBoxJacOp(self.sim, self.sim_id)(x, theta)
        return [pt.zeros_like(x), pt.dot(g, jac)]


class _BlackBoxJacOp(Op):
    __props__ = ("sim_id",)

    def __init__(self, sim: "BlackBoxSimulator", sim_id: int):
        self.sim = sim
        self.sim_id = sim_id

    def make_node(self, x, theta):
        return Apply(self, [pt.as_tensor_variable(x), pt.as_tensor_variable(theta)], [pt.dmatrix()])

    def perform(self, node, inputs, outputs):
        x, theta = inputs
        outputs[0][0] = self.sim._jacobian(np.asarray(x), np.asarray(theta))


@dataclass
class BlackBoxSimulator(Simulator):
    """A NumPy/Python simulator wrapped as a pytensor Op.

    Parameters
    ----------
    fn : callable
        ``fn(x: ndarray (n, d), params: dict[str, float]) -> ndarray (n,)``. Only global
        (non-hierarchical) parameters are supported.
    parameter_names : sequence of str
        Order in which parameters are passed.
    jacobian : callable, optional
        ``jacobian(x, params) -> ndarray (n, n_params)`` of d output / d parameter (columns in
        ``parameter_names`` order). Without it, the twin has no gradient and calibration uses SMC.

    Notes
    -----
    Cost model. Each log-density evaluation runs ``fn`` once; each gradient runs ``fn`` and
    ``jacobian`` (a finite-difference Jacobian costs ``n_params`` more runs of ``fn``). NUTS
    needs about ``(tune + draws) x 2**depth`` gradients per chain, SMC about ``draws x`` (its
    MCMC steps over all stages, typically 20-30) log densities per run and no gradient. With a
    Jacobian, ``calibrate(method="auto")`` times a few evaluations of both and picks the
    cheaper (:mod:`vvuq_twin.inference.sampler_choice`); NUTS then runs in PyMC with the
    pytensor C backend, which calls this Python code directly - nutpie would compile the model
    with numba, which runs a Python ``Op`` in (slow) object mode. Measured on the SIR example
    (``examples/boarding_school.py``, 2 loaded cores): 1.2 ms per log density, 16 ms per
    gradient with a finite-difference Jacobian, so SMC was estimated 6x cheaper.

    An output that is NaN or inf, of the wrong shape, or an exception of ``fn`` raises
    :class:`~vvuq_twin.exceptions.SimulatorError` naming the parameter values, whichever sampler
    runs: the error ends calibration (it is not treated as a rejected proposal, which would hide
    a broken simulator inside the acceptance rate).
    """

    fn: Callable[..., Any]
    parameter_names: Sequence[str] = ()
    jacobian: Callable[..., Any] | None = None
    name: str = "blackbox"
    _op: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.parameter_names = tuple(self.parameter_names)
        if not self.parameter_names:
            raise TwinSpecificationError(
                "BlackBoxSimulator needs `parameter_names` (the order in which parameter values "
                "are passed to fn)."
            )
        self._op = _BlackBoxOp(self, id(self))

    @property
    def has_gradient(self) -> bool:  # type: ignore[override]
        return self.jacobian is not None

    @property
    def no_gradient_reason(self) -> str:  # type: ignore[override]
        return (
            f"BlackBoxSimulator {self.name!r} was given no `jacobian`, so pytensor cannot "
            "differentiate it and NUTS cannot be used"
        )

    def _params(self, theta: np.ndarray) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.parameter_names, theta)}

    def _evaluate(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        p = self._params(theta)
        try:
            out = np.asarray(self.fn(x, p), dtype=float)
        except Exception as exc:  # noqa: BLE001 - re-raised with the failing parameters
            raise SimulatorError(
                f"Simulator {self.name!r} raised {type(exc).__name__}: {exc} at parameters {p}."
            ) from exc
        if out.shape != (x.shape[0],):
            raise SimulatorError(
                f"Simulator {self.name!r} returned shape {out.shape}, expected ({x.shape[0]},) "
                f"(one value per input row), at parameters {p}."
            )
        bad = np.flatnonzero(~np.isfinite(out))
        if bad.size:
            # an error, not a silently rejected proposal: NaN/inf would otherwise reach the
            # sampler (SMC fails with "cannot convert float NaN to integer", NUTS diverges)
            raise SimulatorError(
                f"Simulator {self.name!r} returned {bad.size} non-finite value(s) (NaN/inf) at "
                f"input rows {bad[:10].tolist()} for parameters {p}. Make the simulator finite "
                "over the prior's support (or narrow the prior), or return a large finite value "
                "where it is undefined."
            )
        return out

    def _jacobian(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        p = self._params(theta)
        jac = np.asarray(self.jacobian(x, p), dtype=float)  # type: ignore[misc]
        if jac.shape != (x.shape[0], len(self.parameter_names)):
            raise SimulatorError(
                f"Jacobian of {self.name!r} has shape {jac.shape}, expected "
                f"({x.shape[0]}, {len(self.parameter_names)})."
            )
        return jac

    def __call__(self, x, params):
        missing = [k for k in self.parameter_names if k not in params]
        if missing:
            raise TwinSpecificationError(
                f"BlackBoxSimulator {self.name!r} needs parameters {missing} that the twin does "
                "not declare."
            )
        for k in self.parameter_names:
            if getattr(params[k], "ndim", 0) != 0:
                raise TwinSpecificationError(
                    f"BlackBoxSimulator {self.name!r}: parameter {k!r} is per unit; black-box "
                    "simulators support global parameters only. Write the simulator with "
                    "pytensor (PytensorSimulator) for hierarchical twins."
                )
        theta = pt.stack([pt.as_tensor_variable(params[k]).astype("float64") for k in self.parameter_names])
        return self._op(pt.as_tensor_variable(x).astype("float64"), theta)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "blackbox",
            "name": self.name,
            "fn": source_hash(self.fn),
            "jacobian": source_hash(self.jacobian) if self.jacobian is not None else None,
            "parameter_names": list(self.parameter_names),
        }


@runtime_checkable
class SurrogateLike(Protocol):
    """What a surrogate must offer to stand in for a simulator."""

    def to_pytensor(self, X: pt.TensorVariable) -> tuple[pt.TensorVariable, pt.TensorVariable]:
        """Predictive mean and variance at inputs ``X`` (m, k) as pytensor expressions."""
        ...


@dataclass
class SurrogateSimulator(Simulator):
    """A fitted surrogate standing in for the simulator.

    The surrogate's inputs are the columns of ``x`` named by ``x_columns`` followed by the
    parameters named by ``parameter_names`` (in that order). Its predictive variance is added
    to the observation variance, so emulator uncertainty is carried into calibration.
    """

    surrogate: Any
    parameter_names: Sequence[str]
    x_columns: Sequence[int] = ()
    name: str = "surrogate"

    def __post_init__(self) -> None:
        if not hasattr(self.surrogate, "to_pytensor"):
            raise TwinSpecificationError(
                "SurrogateSimulator needs a surrogate with `to_pytensor(X) -> (mean, var)` "
                "(e.g. vvuq_twin.surrogates.GPSurrogate or PCESurrogate)."
            )
        self.parameter_names = tuple(self.parameter_names)
        self.x_columns = tuple(int(c) for c in self.x_columns)

    def _inputs(self, x, params):
        n = x.shape[0]
        cols = [x[:, c] for c in self.x_columns]
        cols += [pt.ones((n,)) * params[k] for k in self.parameter_names]
        return pt.stack(cols, axis=1)

    def __call__(self, x, params):
        mean, _ = self.surrogate.to_pytensor(self._inputs(x, params))
        return mean

    def predictive_variance(self, x, params):
        _, var = self.surrogate.to_pytensor(self._inputs(x, params))
        return var

    def spec(self) -> dict[str, Any]:
        ident = getattr(self.surrogate, "content_hash", None)
        return {
            "kind": "surrogate",
            "name": self.name,
            "surrogate": ident() if callable(ident) else type(self.surrogate).__name__,
            "parameter_names": list(self.parameter_names),
            "x_columns": list(self.x_columns),
        }
