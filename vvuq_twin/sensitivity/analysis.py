"""Global sensitivity analysis of a quantity of interest (QoI) of a twin.

One entry point, :func:`sensitivity`, runs any of the supported methods on a QoI that maps one
input row to a scalar, and returns a labelled :class:`xarray.Dataset`:

``estimate``, ``ci_lower``, ``ci_upper`` (dims ``input``, ``index``)
    point estimates and confidence intervals (bootstrap unless stated);
``half_budget`` (``input``, ``index``)
    the same estimate from the first half of the budget (convergence check);
attrs
    ``method``, ``n_runs`` (model runs spent), ``wall_time``, ``seed``, ``conf_level``,
    ``max_change`` (largest change between half and full budget; relative to the largest
    index for Morris/DGSM), ``convergence_tol`` and ``converged`` (1/0).

Methods (``n`` is the method's sample size):

=========  =======================================================  ======================
method     what                                                     runs spent
=========  =======================================================  ======================
sobol      SALib Saltelli/Sobol sampling + ``sobol.analyze``        ``n (d + 2)`` or
                                                                    ``n (2d + 2)``
morris     SALib Morris elementary effects: ``mu_star``, ``sigma``  ``n (d + 1)``
fast       SALib extended FAST (``S1``, ``ST``)                     ``n d``
rbd_fast   SALib RBD-FAST (``S1``) on a Latin hypercube             ``n``
dgsm       SALib derivative-based measures (``vi``, ``dgsm``)       ``n (d + 1)``
pce        sparse PCE (chaospy + LARS), indices from coefficients   ``n``
gp         GP emulator, indices on the mean; interval includes the  ``n``
           emulator's uncertainty (joint posterior sample paths)
shapley    Shapley effects, dependent inputs (Song et al. 2016)     see
                                                                    :func:`shapley_effects`
=========  =======================================================  ======================

All model runs go through :func:`vvuq_twin.ensembles.evaluate` (pass ``executor=`` to scale
out).
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from itertools import permutations
from math import factorial
from typing import Any, Callable, Sequence

import numpy as np
import xarray as xr
from scipy import stats

from .._rng import RNGLike, seed_int, spawn_seeds
from ..exceptions import DependentInputsError, InputSpecificationError
from ..spaces import ParameterSpace, PosteriorSpace, as_space
from ..progress import with_progress

__all__ = ["METHODS", "sensitivity", "shapley_effects", "posterior_inputs", "plot_indices"]

METHODS = ("sobol", "morris", "fast", "rbd_fast", "dgsm", "pce", "gp", "shapley")


def posterior_inputs(posterior: xr.Dataset, var_names: Sequence[str] | None = None) -> PosteriorSpace:
    """Posterior draws (e.g. ``result.idata.posterior``) as a dependent input distribution.

    Pass the result as ``inputs=`` to :func:`sensitivity` with ``method="shapley"``.
    """
    return PosteriorSpace.from_dataset(posterior, var_names)


def _run(qoi, X, space, executor):
    from ..surrogates.training import run_design

    return run_design(qoi, X, space.names, executor=executor)


def _dataset(names, index, est, lo, hi, half, *, method, n_runs, wall, seed, conf_level, tol,
             relative=False, extra=None, attrs=None) -> xr.Dataset:
    est, half = np.asarray(est, float), np.asarray(half, float)
    diff = np.abs(est - half)
    if relative:
        diff = diff / max(np.nanmax(np.abs(est)), 1e-300)
    max_change = float(np.nanmax(diff)) if np.any(np.isfinite(diff)) else np.nan
    coords = {"input": list(names), "index": list(index)}
    dims = ("input", "index")
    ds = xr.Dataset(
        {
            "estimate": (dims, est),
            "ci_lower": (dims, np.asarray(lo, float)),
            "ci_upper": (dims, np.asarray(hi, float)),
            "half_budget": (dims, half),
        },
        coords=coords,
    )
    for k, v in (extra or {}).items():
        ds[k] = v
    ds.attrs = {
        "method": method,
        "n_runs": int(n_runs),
        "wall_time": float(wall),
        "seed": int(seed),
        "conf_level": float(conf_level),
        "max_change": max_change,
        "convergence_tol": float(tol),
        "converged": int(np.isfinite(max_change) and max_change <= tol),
        **(attrs or {}),
    }
    return ds


def _require_independent(space, method: str) -> ParameterSpace:
    if isinstance(space, PosteriorSpace) or space.dependent:
        raise DependentInputsError(
            f"method={method!r} computes Sobol-type indices, which assume independent inputs, but "
            "the inputs are dependent (a correlation matrix or posterior draws). Use Shapley "
            "effects instead: sensitivity(qoi, inputs=..., method='shapley')."
        )
    return space


def _saltelli_vec(yA, yB, yAB):
    """Saltelli (2010) first-order and Jansen total indices, vectorised over leading axes."""
    V = np.var(np.concatenate([yA, yB], axis=-1), axis=-1)
    S1 = np.mean(yB[..., None, :] * (yAB - yA[..., None, :]), axis=-1) / V[..., None]
    ST = 0.5 * np.mean((yA[..., None, :] - yAB) ** 2, axis=-1) / V[..., None]
    return S1, ST


@with_progress("sensitivity analysis")
def sensitivity(
    qoi: Callable[[np.ndarray], Any],
    *,
    inputs: Any,
    method: str = "sobol",
    n: int = 1024,
    rng: RNGLike = None,
    executor: Executor | None = None,
    second_order: bool = False,
    n_boot: int = 200,
    conf_level: float = 0.95,
    convergence_tol: float = 0.05,
    **options: Any,
) -> xr.Dataset:
    """Global sensitivity indices of a scalar QoI.

    Parameters
    ----------
    qoi : callable
        ``qoi(x) -> float`` for one input row ``x`` (columns in ``inputs`` order): a twin
        prediction, a risk measure, a decision objective. Must be picklable for process/Dask
        executors.
    inputs : ParameterSpace, list of UncertainInput, PosteriorSpace or xarray.Dataset
        Input distribution; a Dataset is read as posterior draws (dependent: Shapley only).
    method : str
        One of ``METHODS`` (see the module docstring).
    n : int
        Method-specific sample size (see the module docstring).
    rng : Generator, int or None
        Seed. ``attrs["seed"]`` records the seed given (an int), or the integer drawn from a
        Generator / fresh entropy; ``attrs["seed_derived"]`` the integer the estimator used.
    executor : Executor, optional
        Passed to :func:`vvuq_twin.ensembles.evaluate`.
    second_order : bool
        Also compute second-order Sobol indices (``sobol``, ``pce``); stored as ``S2`` with dims
        ``(input, input_2)``.
    n_boot : int
        Bootstrap resamples for confidence intervals.
    conf_level : float
        Confidence level of the intervals.
    convergence_tol : float
        Largest allowed change between half and full budget for ``converged``.
    progressbar : bool or None
        Progress lines on stderr (on by default, see :mod:`vvuq_twin.progress`).
    **options
        Method options: ``num_levels`` (morris), ``M`` (fast, rbd_fast), ``delta`` (dgsm),
        ``max_order``/``q_norm`` (pce), ``n_mc``/``n_paths`` (gp), and those of
        :func:`shapley_effects`.

    Returns
    -------
    xarray.Dataset
        See the module docstring.

    Raises
    ------
    DependentInputsError
        Sobol-type methods with dependent inputs.
    QoIEvaluationError
        The QoI failed or returned NaN/inf on part of the design (the message lists the inputs).
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    if not callable(qoi):
        raise TypeError(f"`qoi` must be callable (a function of one input row), got {type(qoi).__name__}.")
    if int(n) < 2:
        raise ValueError(f"`n` must be >= 2, got {n}.")
    if not 0 < conf_level < 1:
        raise ValueError(f"`conf_level` must be in (0, 1), got {conf_level}.")
    if second_order and method not in ("sobol", "pce"):
        raise ValueError(
            f"second_order=True is available for method='sobol' and 'pce', not {method!r}."
        )
    space = as_space(inputs)
    seed = seed_int(rng)
    common = dict(n=int(n), seed=seed, executor=executor, n_boot=int(n_boot),
                  conf_level=float(conf_level), tol=float(convergence_tol))
    t0 = time.perf_counter()
    if method == "shapley":
        ds = shapley_effects(qoi, space, rng=seed, executor=executor, n_boot=n_boot,
                             conf_level=conf_level, convergence_tol=convergence_tol,
                             **({"n_outer": int(n)} | options))
        return _record_seed(ds, rng, seed)
    space = _require_independent(space, method)
    fn = {"sobol": _sobol, "morris": _morris, "fast": _fast, "rbd_fast": _rbd_fast,
          "dgsm": _dgsm, "pce": _pce, "gp": _gp}[method]
    kw = dict(common)
    if method in ("sobol", "pce"):
        kw["second_order"] = bool(second_order)
    ds = fn(qoi, space, **kw, **options)
    ds.attrs["wall_time"] = float(time.perf_counter() - t0)
    return _record_seed(ds, rng, seed)


def _record_seed(ds: xr.Dataset, rng: RNGLike, derived: int) -> xr.Dataset:
    """``attrs["seed"]``: the seed the caller gave (an int), else the derived one."""
    given = isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)
    ds.attrs["seed"] = int(rng) if given else int(derived)
    ds.attrs["seed_derived"] = int(derived)
    return ds


# ---------------------------------------------------------------------- SALib methods
def _sobol(qoi, space, *, n, seed, executor, n_boot, conf_level, tol, second_order):
    from SALib.analyze import sobol as sobol_analyze
    from SALib.sample import sobol as sobol_sample

    prob = space._unit_problem()
    d = space.dim
    U = sobol_sample.sample(prob, n, calc_second_order=second_order, seed=seed)
    X = space.transform(U)
    y, res = _run(qoi, X, space, executor)
    kw = dict(calc_second_order=second_order, num_resamples=n_boot, conf_level=conf_level, seed=seed)
    full = sobol_analyze.analyze(prob, y, **kw)
    step = 2 * d + 2 if second_order else d + 2
    half = sobol_analyze.analyze(prob, y[: (n // 2) * step], **kw)
    est = np.column_stack([full["S1"], full["ST"]])
    conf = np.column_stack([full["S1_conf"], full["ST_conf"]])
    extra = {}
    if second_order:
        extra["S2"] = (("input", "input_2"), np.nan_to_num(full["S2"], nan=0.0))
        extra["S2_conf"] = (("input", "input_2"), np.nan_to_num(full["S2_conf"], nan=0.0))
    ds = _dataset(space.names, ["S1", "ST"], est, est - conf, est + conf,
                  np.column_stack([half["S1"], half["ST"]]), method="sobol", n_runs=res.n_runs,
                  wall=res.wall_time, seed=seed, conf_level=conf_level, tol=tol, extra=extra)
    if second_order:
        ds = ds.assign_coords(input_2=list(space.names))
    return ds


def _morris(qoi, space, *, n, seed, executor, n_boot, conf_level, tol, num_levels=4):
    from SALib.analyze import morris as morris_analyze
    from SALib.sample import morris as morris_sample

    prob = space.to_salib()
    unbounded = [nm for nm, dist in zip(prob["names"], prob["dists"]) if dist != "unif"]
    if unbounded:
        raise InputSpecificationError(
            f"Morris uses a grid that includes the 0 and 1 quantiles, which are infinite for the "
            f"unbounded inputs {unbounded}. Give them (lower, upper) bounds or use "
            "method='sobol', 'dgsm' or 'pce'."
        )
    d = space.dim
    X = morris_sample.sample(prob, n, num_levels=num_levels, seed=seed)
    y, res = _run(qoi, X, space, executor)
    kw = dict(num_resamples=n_boot, conf_level=conf_level, num_levels=num_levels, seed=seed)
    full = morris_analyze.analyze(prob, X, y, **kw)
    h = (n // 2) * (d + 1)
    half = morris_analyze.analyze(prob, X[:h], y[:h], **kw)
    est = np.column_stack([full["mu_star"], full["sigma"]])
    c = np.asarray(full["mu_star_conf"])
    lo = np.column_stack([est[:, 0] - c, np.full(d, np.nan)])
    hi = np.column_stack([est[:, 0] + c, np.full(d, np.nan)])
    return _dataset(space.names, ["mu_star", "sigma"], est, lo, hi,
                    np.column_stack([half["mu_star"], half["sigma"]]), method="morris",
                    n_runs=res.n_runs, wall=res.wall_time, seed=seed, conf_level=conf_level,
                    tol=tol, relative=True, attrs={"num_levels": int(num_levels)})


def _fast(qoi, space, *, n, seed, executor, n_boot, conf_level, tol, M=4):
    from SALib.analyze import fast as fast_analyze
    from SALib.sample import fast_sampler

    prob = space._unit_problem()
    d = space.dim
    if n <= 4 * M**2:
        raise ValueError(f"FAST needs n > 4 M^2 = {4 * M**2} samples per curve, got n={n}.")
    U = fast_sampler.sample(prob, n, M=M, seed=seed)
    y, res = _run(qoi, space.transform(U), space, executor)
    kw = dict(M=M, num_resamples=n_boot, conf_level=conf_level, seed=seed)
    full = fast_analyze.analyze(prob, y, **kw)
    est = np.column_stack([full["S1"], full["ST"]])
    conf = np.column_stack([full["S1_conf"], full["ST_conf"]])
    yh = y.reshape(d, n)[:, ::2]
    if yh.shape[1] > 4 * M**2:  # every other point of each search curve
        half = fast_analyze.analyze(prob, yh.reshape(-1), **kw)
        half = np.column_stack([half["S1"], half["ST"]])
    else:
        half = np.full_like(est, np.nan)
    return _dataset(space.names, ["S1", "ST"], est, est - conf, est + conf, half, method="fast",
                    n_runs=res.n_runs, wall=res.wall_time, seed=seed, conf_level=conf_level,
                    tol=tol, attrs={"M": int(M)})


def _rbd_fast(qoi, space, *, n, seed, executor, n_boot, conf_level, tol, M=10):
    from SALib.analyze import rbd_fast
    from SALib.sample import latin

    prob = space._unit_problem()
    U = latin.sample(prob, n, seed=seed)
    y, res = _run(qoi, space.transform(U), space, executor)
    kw = dict(M=M, num_resamples=n_boot, conf_level=conf_level, seed=seed)
    full = rbd_fast.analyze(prob, U, y, **kw)
    half = rbd_fast.analyze(prob, U[: n // 2], y[: n // 2], **kw)
    est = np.asarray(full["S1"])[:, None]
    c = np.asarray(full["S1_conf"])[:, None]
    return _dataset(space.names, ["S1"], est, est - c, est + c, np.asarray(half["S1"])[:, None],
                    method="rbd_fast", n_runs=res.n_runs, wall=res.wall_time, seed=seed,
                    conf_level=conf_level, tol=tol, attrs={"M": int(M)})


def _dgsm(qoi, space, *, n, seed, executor, n_boot, conf_level, tol, delta=0.01):
    from SALib.analyze import dgsm
    from SALib.sample import finite_diff

    prob = space.to_salib()
    d = space.dim
    X = finite_diff.sample(prob, n, delta=delta, seed=seed)
    y, res = _run(qoi, X, space, executor)
    kw = dict(num_resamples=n_boot, conf_level=conf_level, seed=seed)
    full = dgsm.analyze(prob, X, y, **kw)
    h = (n // 2) * (d + 1)
    half = dgsm.analyze(prob, X[:h], y[:h], **kw)
    est = np.column_stack([full["vi"], full["dgsm"]])
    c = np.asarray(full["dgsm_conf"])
    lo = np.column_stack([np.full(d, np.nan), est[:, 1] - c])
    hi = np.column_stack([np.full(d, np.nan), est[:, 1] + c])
    return _dataset(space.names, ["vi", "dgsm"], est, lo, hi,
                    np.column_stack([half["vi"], half["dgsm"]]), method="dgsm",
                    n_runs=res.n_runs, wall=res.wall_time, seed=seed, conf_level=conf_level,
                    tol=tol, relative=True, attrs={"delta": float(delta)})


# ---------------------------------------------------------------------- surrogate methods
def _pce(qoi, space, *, n, seed, executor, n_boot, conf_level, tol, second_order,
         max_order=14, q_norm=0.75, design="sobol"):
    from ..surrogates.pce import PCESurrogate

    X = space.sample(n, rng=seed, method=design)
    y, res = _run(qoi, X, space, executor)
    sur = PCESurrogate(space, max_order=max_order, q_norm=q_norm).fit(X, y)
    full = sur.sobol_indices()
    est = np.column_stack([full["S1"], full["ST"]])
    # bootstrap: refit the selected terms by least squares on resampled runs
    Psi = sur._design_matrix(X, sur.univariate_, sur.multi_index_)
    gen = np.random.default_rng(seed)
    boots = []
    tmp = PCESurrogate.__new__(PCESurrogate)
    tmp.multi_index_ = sur.multi_index_
    for _ in range(n_boot):
        i = gen.integers(0, n, n)
        tmp.coef_ = np.linalg.lstsq(Psi[i], y[i], rcond=None)[0]
        b = tmp.sobol_indices()
        boots.append(np.column_stack([b["S1"], b["ST"]]))
    a = (1 - conf_level) / 2
    lo, hi = np.quantile(np.array(boots), [a, 1 - a], axis=0)
    lo, hi = np.minimum(lo, est), np.maximum(hi, est)
    h = n // 2
    half_sur = PCESurrogate(space, max_order=max_order, q_norm=q_norm).fit(X[:h], y[:h])
    hs = half_sur.sobol_indices()
    extra = {}
    if second_order:
        extra["S2"] = (("input", "input_2"), full["S2"])
    ds = _dataset(space.names, ["S1", "ST"], est, lo, hi, np.column_stack([hs["S1"], hs["ST"]]),
                  method="pce", n_runs=res.n_runs, wall=res.wall_time, seed=seed,
                  conf_level=conf_level, tol=tol, extra=extra,
                  attrs={"pce_order": int(sur.order_), "pce_terms": int(sur.coef_.size),
                         "q2_loo": float(sur.q2_loo_)})
    if second_order:
        ds = ds.assign_coords(input_2=list(space.names))
    return ds


def _gp_indices(sur, space, n_mc, seed, n_boot, conf_level):
    from SALib.analyze import sobol as sobol_analyze
    from SALib.sample import sobol as sobol_sample

    prob = space._unit_problem()
    U = sobol_sample.sample(prob, n_mc, calc_second_order=False, seed=seed)
    y = sur.predict_mean(space.transform(U))
    r = sobol_analyze.analyze(prob, y, calc_second_order=False, num_resamples=n_boot,
                              conf_level=conf_level, seed=seed)
    return (np.column_stack([r["S1"], r["ST"]]), np.column_stack([r["S1_conf"], r["ST_conf"]]))


def _gp(qoi, space, *, n, seed, executor, n_boot, conf_level, tol, n_mc=2**14, n_paths=100,
        n_path_design=256, design="lhs"):
    from ..surrogates.gp import GPSurrogate

    s_design, s_fit, s_mc, s_paths = spawn_seeds(seed, 4)
    X = space.sample(n, rng=s_design, method=design)
    y, res = _run(qoi, X, space, executor)
    sur = GPSurrogate(rng=s_fit, sparse=False).fit(X, y)
    est, mc_conf = _gp_indices(sur, space, n_mc, s_mc, n_boot, conf_level)
    # emulator uncertainty: indices of joint posterior sample paths on a fixed pick-freeze design
    gen = np.random.default_rng(s_paths)
    d, m = space.dim, n_path_design
    A, B = space.sample(m, rng=gen), space.sample(m, rng=gen)
    AB = np.repeat(A[None], d, axis=0)
    for i in range(d):
        AB[i, :, i] = B[:, i]
    pts = np.concatenate([A, B, AB.reshape(d * m, d)])
    F = sur.sample_posterior(pts, n_paths, rng=gen)
    S1p, STp = _saltelli_vec(F[:, :m], F[:, m : 2 * m], F[:, 2 * m :].reshape(n_paths, d, m))
    em_sd = np.column_stack([S1p.std(axis=0), STp.std(axis=0)])
    z = stats.norm.ppf(0.5 + conf_level / 2)
    half_w = np.sqrt(mc_conf**2 + (z * em_sd) ** 2)
    h = n // 2
    half_sur = GPSurrogate(rng=s_fit, sparse=False).fit(X[:h], y[:h])
    half, _ = _gp_indices(half_sur, space, n_mc, s_mc, 2, conf_level)
    return _dataset(
        space.names, ["S1", "ST"], est, est - half_w, est + half_w, half, method="gp",
        n_runs=res.n_runs, wall=res.wall_time, seed=seed, conf_level=conf_level, tol=tol,
        extra={"emulator_sd": (("input", "index"), em_sd), "mc_halfwidth": (("input", "index"), mc_conf)},
        attrs={"q2_loo": float(sur.q2_loo_), "n_mc": int(n_mc), "n_paths": int(n_paths)},
    )


# ---------------------------------------------------------------------- Shapley effects
def shapley_effects(
    qoi: Callable[[np.ndarray], Any],
    inputs: Any,
    *,
    n_perm: int | None = None,
    n_var: int = 2000,
    n_outer: int = 500,
    n_inner: int = 3,
    rng: RNGLike = None,
    executor: Executor | None = None,
    n_boot: int = 200,
    conf_level: float = 0.95,
    convergence_tol: float = 0.05,
) -> xr.Dataset:
    """Shapley effects for dependent inputs (Song, Nelson & Staum 2016, Algorithm 1).

    The cost of a subset ``J`` is ``c(J) = E[Var(Y | X_{-J})]``, estimated with ``n_outer``
    draws of ``X_{-J}`` and ``n_inner`` conditional draws of ``X_J | X_{-J}`` each; the
    Shapley value averages the increments of ``c`` over permutations: all ``d!`` of them when
    ``d! <= n_perm`` (exact-permutation algorithm), else ``n_perm`` random ones. ``Var(Y)`` uses
    ``n_var`` joint draws. Model runs: ``n_var + m (d - 1) n_outer n_inner`` for ``m``
    permutations.

    Conditional sampling goes through a Gaussian copula (:class:`ParameterSpace` /
    :class:`PosteriorSpace`): exact for Gaussian inputs (closed-form conditional), and for
    posterior draws an approximation with empirical marginals and a normal-score correlation.

    Confidence intervals: bootstrap over the outer samples and the variance rows.

    Returns
    -------
    xarray.Dataset
        ``estimate`` etc. with ``index = ["Sh"]``; attrs as in :func:`sensitivity` plus
        ``variance``, ``n_permutations``, ``exact_permutations``.
    """
    space = as_space(inputs)
    d = space.dim
    if d < 2:
        raise ValueError("Shapley effects need at least 2 inputs.")
    if n_inner < 2 or n_outer < 2 or n_var < 2:
        raise ValueError(
            f"Need n_inner >= 2, n_outer >= 2 and n_var >= 2; got {n_inner}, {n_outer}, {n_var}."
        )
    seed = seed_int(rng)
    s_var, s_perm, s_outer, s_inner, s_boot = spawn_seeds(seed, 5)
    t0 = time.perf_counter()
    if n_perm is None:
        n_perm = max(factorial(d), 1) if d <= 6 else 200
    exact = factorial(d) <= n_perm
    if exact:
        perms = np.array(list(permutations(range(d))))
    else:
        g = np.random.default_rng(s_perm)
        perms = np.array([g.permutation(d) for _ in range(n_perm)])
    m = perms.shape[0]
    Xv = space.sample(n_var, rng=s_var)
    outer = space.sample(m * (d - 1) * n_outer, rng=s_outer).reshape(m, d - 1, n_outer, d)
    gin = np.random.default_rng(s_inner)
    blocks = []
    for p in range(m):
        for j in range(d - 1):
            cond = list(perms[p, j + 1 :])
            blocks.append(space.conditional_sample(cond, outer[p, j][:, cond], n_inner, rng=gin))
    pts = np.concatenate([Xv, np.concatenate(blocks).reshape(-1, d)])
    y, res = _run(qoi, pts, space, executor)
    yv = y[:n_var]
    cvar = np.var(y[n_var:].reshape(m, d - 1, n_outer, n_inner), axis=-1, ddof=1)

    def _shap(cv, vy):
        # cv: (..., m, d-1, n_outer) -> Sh (..., d)
        c = cv.mean(axis=-1)
        c = np.concatenate([np.zeros(c.shape[:-1] + (1,)), c, np.broadcast_to(
            np.asarray(vy)[..., None, None], c.shape[:-1] + (1,))], axis=-1)
        inc = np.diff(c, axis=-1)  # (..., m, d)
        sh = np.zeros(inc.shape[:-2] + (d,))
        for p in range(m):
            sh[..., perms[p]] += inc[..., p, :]
        return sh / m / np.asarray(vy)[..., None]

    var_y = np.var(yv, ddof=1)
    est = _shap(cvar, var_y)
    gb = np.random.default_rng(s_boot)
    io = gb.integers(0, n_outer, (n_boot, n_outer))
    iv = gb.integers(0, n_var, (n_boot, n_var))
    boots = np.array([_shap(cvar[..., io[b]], np.var(yv[iv[b]], ddof=1)) for b in range(n_boot)])
    a = (1 - conf_level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a], axis=0)
    half = _shap(cvar[..., : n_outer // 2], np.var(yv[: n_var // 2], ddof=1))
    return _dataset(
        space.names, ["Sh"], est[:, None], np.minimum(lo, est)[:, None],
        np.maximum(hi, est)[:, None], half[:, None], method="shapley", n_runs=res.n_runs,
        wall=time.perf_counter() - t0, seed=seed, conf_level=conf_level, tol=convergence_tol,
        attrs={"variance": float(var_y), "n_permutations": int(m),
               "exact_permutations": int(exact), "n_outer": int(n_outer),
               "n_inner": int(n_inner), "n_var": int(n_var),
               "conditional_sampler": "gaussian-copula"},
    )


# ---------------------------------------------------------------------- plotting
def plot_indices(ds: xr.Dataset, *, index: str | Sequence[str] | None = None, ax=None):
    """Ranked horizontal bars of indices with their confidence intervals.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of :func:`sensitivity` / :func:`shapley_effects`.
    index : str or sequence of str, optional
        Which indices to show (default: all). Inputs are ranked by the first one.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if "estimate" not in ds or "index" not in ds.dims:
        raise ValueError("plot_indices expects the Dataset returned by sensitivity().")
    names = list(ds["index"].values) if index is None else ([index] if isinstance(index, str) else list(index))
    unknown = [k for k in names if k not in ds["index"].values]
    if unknown:
        raise ValueError(f"Unknown index {unknown}; available: {list(ds['index'].values)}.")
    order = ds["estimate"].sel(index=names[0]).fillna(-np.inf).values.argsort()
    inputs = ds["input"].values[order]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 0.45 * len(inputs) + 1.5))
    else:
        fig = ax.figure
    h = 0.8 / len(names)
    ypos = np.arange(len(inputs))
    for k, name in enumerate(names):
        sub = ds.sel(index=name, input=inputs)
        est = sub["estimate"].values
        err = np.vstack([est - sub["ci_lower"].values, sub["ci_upper"].values - est])
        err = np.where(np.isfinite(err), np.abs(err), 0.0)
        ax.barh(ypos + k * h, est, height=h, xerr=err, capsize=3, label=name)
    ax.set_yticks(ypos + h * (len(names) - 1) / 2)
    ax.set_yticklabels(inputs)
    ax.set_xlabel("index")
    ax.set_title(f"{ds.attrs.get('method', '')} ({ds.attrs.get('n_runs', '?')} runs, "
                 f"{int(100 * ds.attrs.get('conf_level', 0.95))}% intervals)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
