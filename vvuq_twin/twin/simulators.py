"""Simulators eta(x, theta): the physics part of a twin.

Four kinds share one small interface (:class:`Simulator`):

* :class:`PytensorSimulator` - a pytensor-traceable function; gradients flow to NUTS.
* :class:`ODESimulator` - an ODE integrated with classical RK4 in ``pytensor.scan``; each
  observation is integrated from ``t0`` to its own time, so gradients flow and the step count
  is a verifiable discretisation parameter (observed order 4).
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
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ..exceptions import SimulatorError, TwinSpecificationError

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
        src = code.co_code.hex() if code is not None else repr(obj)
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


@dataclass
class ODESimulator(Simulator):
    """ODE ``dy/dt = rhs(t, y, params)`` integrated with RK4 in ``pytensor.scan``.

    The observation time is input column ``time_column`` of ``x``. Each observation is
    integrated independently from ``t0`` to its time with ``n_steps`` equal RK4 steps, so that
    the solution is exact up to O(h^4) at every observation and the discretisation can be
    verified by refinement (observed order 4).

    Parameters
    ----------
    rhs : callable
        ``rhs(t, y, params) -> dy/dt``; ``y`` is a tensor of shape ``(n, n_states)``; per-unit
        parameters arrive with shape ``(n,)``.
    y0 : callable
        ``y0(params) -> tensor (n, n_states)`` or ``(n_states,)``: initial state at ``t0``.
    t0 : float
        Initial time.
    n_steps : int
        RK4 steps from ``t0`` to each observation time.
    output : callable, optional
        Map from the final state ``(n, n_states)`` to the observable ``(n,)``; default: first
        state.
    """

    rhs: Callable[..., Any]
    y0: Callable[..., Any]
    t0: float = 0.0
    n_steps: int = 50
    output: Callable[..., Any] | None = None
    time_column: int = 0
    name: str = "ode"

    def __post_init__(self) -> None:
        if int(self.n_steps) < 1:
            raise TwinSpecificationError(f"ODESimulator: n_steps must be >= 1, got {self.n_steps}.")

    def __call__(self, x, params):
        t_end = x[:, self.time_column]
        n = t_end.shape[0]
        h = (t_end - self.t0) / self.n_steps
        y0 = pt.as_tensor_variable(self.y0(params))
        if y0.ndim == 1:
            y0 = pt.ones((n, 1)) * y0[None, :]
        rhs = self.rhs

        def step(k, y, h, *param_vals):
            p = dict(zip(names, param_vals))
            t = self.t0 + k * h
            hc = h[:, None]
            k1 = rhs(t, y, p)
            k2 = rhs(t + h / 2, y + hc / 2 * k1, p)
            k3 = rhs(t + h / 2, y + hc / 2 * k2, p)
            k4 = rhs(t + h, y + hc * k3, p)
            return y + hc / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

        names = list(params)
        vals = [pt.as_tensor_variable(params[k]) for k in names]
        ys, _ = pytensor.scan(
            step,
            sequences=[pt.arange(self.n_steps, dtype="float64")],
            outputs_info=[y0],
            non_sequences=[h, *vals],
            strict=False,
        )
        y_end = ys[-1]
        if self.output is None:
            return y_end[:, 0]
        return self.output(y_end, params)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "ode",
            "name": self.name,
            "rhs": source_hash(self.rhs),
            "y0": source_hash(self.y0),
            "output": source_hash(self.output) if self.output is not None else None,
            "t0": float(self.t0),
            "n_steps": int(self.n_steps),
            "time_column": int(self.time_column),
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
