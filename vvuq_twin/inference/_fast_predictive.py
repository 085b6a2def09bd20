"""Posterior predictive in numpy, vectorised over draws, from the declaration's own functions.

``pm.sample_posterior_predictive`` compiles a forward-sampling function with PyTensor's C
backend (gcc on a fresh install: measured 11.5 s of the README job's 36 s first run on an idle
2-core machine) and then calls it once per posterior draw (2-3 s for 4000 draws even with
PyTensor's cache warm). The predictive of a twin is simple given the posterior draws: the
simulator output, a Gaussian conditional for an integrated-out GP discrepancy, and the
observation model's noise. This module draws it with the declaration's numpy functions
(:meth:`~vvuq_twin.twin.discrepancy.GPDiscrepancy.marginal_cov_numpy`,
:meth:`~vvuq_twin.twin.observation.ObservationModel.scale_numpy` and ``.sample``), all draws
at once, and the simulator through one batched graph (``pytensor.graph.vectorize_graph``)
compiled in Python mode (no C compiler).

The draws follow the same distribution as PyMC's (checked against it in
``tests/core/test_fast_predictive.py``) but from another random stream: a given seed gives other
(equally valid) numbers than the PyMC path, and always the same ones. Where a twin is outside
what is implemented here (ODE simulators with an accuracy indicator, surrogates with a
predictive variance, missing observations, new units, latent GP discrepancies at new inputs)
the functions return ``None`` and the caller uses PyMC's path. ``VVUQ_TWIN_FAST_PREDICTIVE=0``
switches this module off.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xarray as xr

from ..twin.data import TwinData
from ..twin.declaration import Twin

__all__ = ["fast_predictive_enabled", "posterior_predictive_numpy", "predict_numpy"]

_ENV = "VVUQ_TWIN_FAST_PREDICTIVE"


def fast_predictive_enabled() -> bool:
    """False when ``$VVUQ_TWIN_FAST_PREDICTIVE`` is ``0``/``false``/``off``/``no``."""
    return os.environ.get(_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def _flat(post: xr.Dataset) -> tuple[dict[str, np.ndarray], int, int]:
    nc, nd = int(post.sizes["chain"]), int(post.sizes["draw"])
    return Twin.draws_from(post), nc, nd


def _sym_params(twin: Twin, m: int):
    import pytensor.tensor as pt

    return {p.name: (pt.dvector(p.name) if p.per_unit else pt.dscalar(p.name)) for p in twin.parameters}


def _plain_simulator(twin: Twin, X: np.ndarray) -> bool:
    """No accuracy indicator (ODE) and no predictive variance (surrogate) at ``X``."""
    import pytensor.tensor as pt

    sym = _sym_params(twin, X.shape[0])
    Xt = pt.as_tensor_variable(X)
    return (twin.simulator.accuracy(Xt, sym) is None
            and twin.simulator.predictive_variance(Xt, sym) is None)


_BINARY_REWRITE: Any = None


def _binary_elemwise_rewrite():
    """Graph rewrite: every n-ary ``Add``/``Mul`` Elemwise (n > 2) -> a left-to-right chain of
    binary ones, which the Python linker evaluates with one numpy ufunc call each."""
    global _BINARY_REWRITE
    if _BINARY_REWRITE is None:
        import pytensor.scalar as ps
        import pytensor.tensor as pt
        from pytensor.graph.rewriting.basic import in2out, node_rewriter
        from pytensor.tensor.elemwise import Elemwise

        @node_rewriter([Elemwise])
        def vvuq_binary_add_mul(fgraph, node):
            so = node.op.scalar_op
            if len(node.inputs) <= 2 or not isinstance(so, (ps.Add, ps.Mul)):
                return None
            if any(x.dtype != node.outputs[0].dtype for x in node.inputs):
                # mixed dtypes: a binary chain could compute a partial sum in a narrower type
                # (int8 + int8 overflows) than the n-ary node; leave it as it is
                return None
            f = pt.add if isinstance(so, ps.Add) else pt.mul
            out = node.inputs[0]
            for x in node.inputs[1:]:
                out = f(out, x)
            return [out]

        _BINARY_REWRITE = in2out(vvuq_binary_add_mul, name="vvuq_binary_add_mul")
    return _BINARY_REWRITE


def _python_mode():
    """PyTensor's FAST_COMPILE mode (Python linker, no C compiler) whose graphs hold only binary
    sums and products: the Python linker evaluates an n-ary ``Add``/``Mul`` (no numpy ufunc of
    that arity) element by element through ``np.frompyfunc`` - 48,000 Python calls for the README
    twin's ``theta * x`` over 4000 draws (0.2 s), and 30 s for one evaluation of the climate
    twin's likelihood at 2000 particles (products of 3-5 factors in its graph), where binary
    ``np.multiply`` calls take microseconds. So the canonicalizers that merge binary nodes are
    left out, and a last rewrite splits the n-ary nodes the graph was built with."""
    from pytensor.compile.mode import get_mode

    mode = get_mode("FAST_COMPILE").excluding("local_mul_canonizer", "local_add_canonizer")
    return mode.register((_binary_elemwise_rewrite(), 99))


def simulate_batched(twin: Twin, X: np.ndarray, vals: dict[str, np.ndarray],
                     unit_idx: np.ndarray | None) -> np.ndarray:
    """eta at ``X`` for every draw, (n_draws, m): one vectorised graph, Python-mode compile."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.replace import vectorize_graph

    m = X.shape[0]
    sym = _sym_params(twin, m)
    eta = pt.as_tensor_variable(twin.simulator(pt.as_tensor_variable(X), sym)) * pt.ones((m,))
    batched = {s: (pt.dmatrix(n + "_b") if s.ndim == 1 else pt.dvector(n + "_b")) for n, s in sym.items()}
    eta_b = vectorize_graph(eta, replace={sym[n]: batched[sym[n]] for n in sym})
    order = [p.name for p in twin.parameters]
    f = pytensor.function([batched[sym[n]] for n in order], eta_b, mode=_python_mode(),
                          on_unused_input="ignore")
    args = []
    for p in twin.parameters:
        v = np.asarray(vals[p.name], float)
        args.append(np.ascontiguousarray(v[:, unit_idx]) if p.per_unit else v.reshape(-1))
    out = np.asarray(f(*args), float)
    n = args[0].shape[0] if args else 1
    return np.broadcast_to(out, (n, m)).copy()


def _gp_conditional(twin: Twin, draws: dict[str, np.ndarray], data: TwinData, eta_obs: np.ndarray,
                    noise: dict[str, np.ndarray], X_new: np.ndarray, unit_new: np.ndarray | None,
                    rng: np.random.Generator) -> np.ndarray:
    """delta at ``X_new`` from its Gaussian conditional given theta and y (integrated-out GP).

    As the model's ``_marginal_conditional``: Sigma = K_oo + jitter + diag(sd^2), mean
    K_on^T Sigma^{-1} (y - eta), covariance K_nn - K_on^T Sigma^{-1} K_on (+ jitter).
    """
    disc = twin.discrepancy
    unit_idx, _ = twin.unit_index(data)
    n, m = data.n, X_new.shape[0]
    X_all = np.vstack([np.asarray(data.x, float), X_new])
    u_all = None if unit_idx is None else np.concatenate([unit_idx, unit_new])
    jit = float(disc.jitter)
    K = disc.marginal_cov_numpy(draws, X_all, u_all) - jit * np.eye(n + m)[None]  # pure covariance
    sd = twin.observation.scale_numpy(noise, eta_obs, data.y_sd, None)
    Sigma = K[:, :n, :n] + jit * np.eye(n)[None] + np.einsum("di,ij->dij", sd**2, np.eye(n))
    L = np.linalg.cholesky(Sigma)
    Kx = K[:, :n, n:]
    A = _solve_lower(L, Kx)
    r = _solve_lower(L, (np.asarray(data.y, float)[None, :] - eta_obs)[..., None])[..., 0]
    mu = np.einsum("dij,di->dj", A, r)
    C = K[:, n:, n:] - np.einsum("dij,dik->djk", A, A)
    C = 0.5 * (C + np.swapaxes(C, 1, 2)) + jit * np.eye(m)[None]
    Lc = np.linalg.cholesky(C)
    z = rng.standard_normal((mu.shape[0], m))
    return mu + np.einsum("dij,dj->di", Lc, z)


def _solve_lower(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Batched solve of L X = B (L (d, n, n) lower triangular, B (d, n, k)); small n."""
    return np.linalg.solve(L, B)


def _dataset(arrays: dict[str, np.ndarray], nc: int, nd: int, obs: Any, dim: str = "obs") -> xr.Dataset:
    return xr.Dataset(
        {k: (("chain", "draw", dim), v.reshape(nc, nd, -1)) for k, v in arrays.items()},
        coords={"chain": np.arange(nc), "draw": np.arange(nd), dim: list(obs)},
    )


def _y_dtype(twin: Twin, y: np.ndarray) -> np.ndarray:
    """Draws of y in PyMC's dtype: integers for count observation models, floats otherwise."""
    from ..twin.observation import _CountModel

    return np.asarray(y).astype(np.int64) if isinstance(twin.observation, _CountModel) else np.asarray(y, float)


def _supported(twin: Twin, data: TwinData) -> bool:
    return bool(np.all(data.observed_mask)) and _plain_simulator(twin, np.asarray(data.x, float))


def posterior_predictive_numpy(twin: Twin, data: TwinData, post: xr.Dataset, want: list[str],
                               seed: int) -> xr.Dataset | None:
    """The role variables in ``want`` (``delta``, ``zeta``) and ``y`` at the calibration inputs.

    ``post`` holds the posterior (with ``eta``, and ``delta``/``zeta`` unless the GP is
    integrated out). Returns ``None`` where this twin needs PyMC's path.
    """
    if not fast_predictive_enabled() or not _supported(twin, data):
        return None
    if not set(want) <= {"delta", "zeta", "y"} or "eta" not in post:
        return None
    rng = np.random.default_rng(seed)
    draws, nc, nd = _flat(post)
    eta = draws["eta"].reshape(nc * nd, -1)
    noise = twin.observation.noise_values(draws, nc * nd)
    out: dict[str, np.ndarray] = {}
    if twin.marginal_discrepancy():
        delta = _gp_conditional(twin, draws, data, eta, noise, np.asarray(data.x, float),
                                twin.unit_index(data)[0], rng)
        zeta = twin.observation.combine_numpy(eta, delta)
        sd = twin.observation.scale_numpy(noise, eta, data.y_sd, None)
    else:
        if "zeta" not in draws:
            return None
        delta, zeta = draws.get("delta"), draws["zeta"].reshape(nc * nd, -1)
        sd = twin.observation.scale_numpy(noise, zeta, data.y_sd, None)
    if "delta" in want:
        out["delta"] = delta
    if "zeta" in want:
        out["zeta"] = zeta
    if "y" in want:
        out["y"] = _y_dtype(twin, twin.observation.sample(zeta, sd, noise, rng))
    return _dataset(out, nc, nd, data.obs)


def predict_numpy(twin: Twin, data: TwinData, post: xr.Dataset, X: np.ndarray,
                  unit_idx: np.ndarray | None, new_unit: bool, include_y: bool,
                  seed: int | None) -> xr.Dataset | None:
    """``eta``, ``delta``, ``zeta`` (and ``y``) at new inputs ``X``, or ``None`` (PyMC's path).

    Implemented for an integrated-out GP discrepancy and for no discrepancy, at known units or
    without units; ``post`` is the full posterior (``eta`` at the calibration inputs is taken
    from it when present, else simulated).
    """
    from ..twin.discrepancy import NoDiscrepancy

    if not fast_predictive_enabled() or new_unit or not _supported(twin, data):
        return None
    if unit_idx is None and twin.unit_index(data)[0] is not None:
        return None  # a twin with units needs one (PyMC's path says so, with what to do)
    marginal = twin.marginal_discrepancy()
    if not marginal and not isinstance(twin.discrepancy, NoDiscrepancy):
        return None
    if not _plain_simulator(twin, X):
        return None
    rng = np.random.default_rng(seed)
    draws, nc, nd = _flat(post)
    D = nc * nd
    vals = twin.parameter_values(draws)
    eta_n = simulate_batched(twin, X, vals, unit_idx)
    noise = twin.observation.noise_values(draws, D)
    if marginal:
        eta_o = (draws["eta"].reshape(D, -1) if "eta" in draws else
                 simulate_batched(twin, np.asarray(data.x, float), vals, twin.unit_index(data)[0]))
        delta_n = _gp_conditional(twin, draws, data, eta_o, noise, X, unit_idx, rng)
    else:
        delta_n = np.zeros_like(eta_n)
    zeta_n = twin.observation.combine_numpy(eta_n, delta_n)
    out = {"eta": eta_n, "delta": delta_n, "zeta": zeta_n}
    if include_y:
        sd = twin.observation.scale_numpy(noise, zeta_n, None, None)
        out["y"] = _y_dtype(twin, twin.observation.sample(zeta_n, sd, noise, rng))
    return _dataset(out, nc, nd, range(X.shape[0]))
