"""Calibrate a twin: NUTS through nutpie by default, PyMC's NUTS as fallback, SMC on request.

SMC (no gradient, or on request) is documented in :mod:`vvuq_twin.inference.smc`; a black box
with a Jacobian is sent to NUTS or SMC by the cost model of
:mod:`vvuq_twin.inference.sampler_choice`.

Compiled models are cached in memory, keyed by the declaration hash and the data's *structure*
hash (inputs, units, known sds, missing mask - not the observed values, which live in a data
container): recalibrating the same twin with another seed or more draws, or on new
observations at the same inputs (simulation-based calibration, repeated experiments), does not
compile again. With nutpie's numba backend (the default) the compiled model is also kept on
disk under the same key (:mod:`vvuq_twin.inference._compile_cache`), so a new process with the
same declaration loads it instead of compiling (``info["compile_cache_hit"]``).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections import OrderedDict
from typing import Any, Literal

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from .._rng import RNGLike, as_generator, spawn_seeds
from ..exceptions import (
    CalibrationError,
    SamplerChoiceWarning,
    SimulatorCalibrationError,
    SimulatorError,
)
from ..progress import Progress, progress_enabled
from ..twin.data import TwinData
from ..twin.declaration import OBSERVED_DATA_NAME, Twin
from ._checks import check_calibrate_args
from ..twin.declaration import ROLE_DETERMINISTICS as _ROLE_DETERMINISTICS
from ._threads import small_matrix_threads
from .diagnostics import Thresholds, compute_diagnostics
from .ledger import Ledger
from .results import TwinResult
from .smc import SMCOptions, smc_checks, smc_sample_stats, smc_summary
from .sampler_choice import choose_sampler_by_cost, is_python_op_simulator
from .results import TwinResult, add_latent_group, data_groups
from .loglik import has_closed_form
from .simcheck import check_calibration, pop_accuracy

__all__ = ["calibrate", "clear_compile_cache", "precompile", "ROLE_DETERMINISTICS"]

#: Deterministics moved from the posterior to the posterior predictive group (defined once,
#: in the declaration: the role variables other than the observed y)
ROLE_DETERMINISTICS = _ROLE_DETERMINISTICS

_CACHE: "OrderedDict[tuple[str, str], Any]" = OrderedDict()
_CACHE_SIZE = 16
_log = logging.getLogger("vvuq_twin.calibrate")


def clear_compile_cache(disk: bool = False) -> None:
    """Forget the compiled models cached in this process (and on disk with ``disk=True``).

    The on-disk cache lives in :func:`vvuq_twin.inference._compile_cache.cache_dir`
    (``$VVUQ_TWIN_CACHE_DIR``; ``VVUQ_TWIN_COMPILE_CACHE=0`` switches it off).
    """
    _CACHE.clear()
    if disk:
        import shutil

        from ._compile_cache import cache_dir

        shutil.rmtree(cache_dir(), ignore_errors=True)


def _nutpie_compiled(model: pm.Model, key: tuple[str, str], y_observed: np.ndarray | None = None,
                     backend: str = "numba", frozen: bool = False):
    """Compiled nutpie model and compile status (in-memory cache, then the on-disk cache).

    ``frozen``: the JAX model with its data frozen in, compiled for this call only (nutpie's
    normalising-flow adaptation calls the log density without the shared data).
    """
    import nutpie

    if frozen:
        t0 = time.perf_counter()
        compiled = nutpie.compile_pymc_model(model, backend="jax", gradient_backend="jax", freeze_model=True)
        return compiled, {"compile_time_s": time.perf_counter() - t0,
                          "compile_cache": "off (flow adaptation: data frozen into the model)",
                          "compile_cache_hit": False}

    mkey = (*key, backend)
    if mkey in _CACHE:
        _CACHE.move_to_end(mkey)
        compiled = _CACHE[mkey]
        if y_observed is not None:
            compiled = compiled.with_data(**{OBSERVED_DATA_NAME: y_observed})
        return compiled, {"compile_time_s": 0.0, "compile_cache": "memory", "compile_cache_hit": True}
    if backend == "numba":
        from ._compile_cache import compile_numba_cached

        compiled, status = compile_numba_cached(model, *key)
    else:
        t0 = time.perf_counter()
        # not frozen (nutpie's default for jax), so that new observations reuse it (with_data)
        compiled = nutpie.compile_pymc_model(model, backend="jax", gradient_backend="jax",
                                             freeze_model=False)
        status = {"compile_time_s": time.perf_counter() - t0, "compile_cache": "off (jax backend)",
                  "compile_cache_hit": False}
    _CACHE[mkey] = compiled
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return compiled, status


def _default_backend(backend: str | None) -> str:
    """nutpie's backend: the one given, else ``$VVUQ_TWIN_BACKEND``, else ``"numba"``."""
    return backend if backend is not None else (os.environ.get("VVUQ_TWIN_BACKEND", "").strip().lower() or "numba")


def _model_for(twin: Twin, data: TwinData, *, resolved: str, mass_matrix: str = "diag",
               collapse_discrepancy: bool = False) -> tuple[Twin, dict[str, Any], pm.Model, tuple[str, str]]:
    """The model :func:`calibrate` samples and its compile-cache key (declaration, structure).

    Checks the data against the twin first (before anything is built). Returns the twin with its
    per-unit parametrisation fixed for these data (centred / non-centred, declared or "auto"),
    that parametrisation, the PyMC model (the collapsed one with ``collapse_discrepancy``) and
    the key under which its compiled form is cached.
    """
    twin.check(data)  # validation before any compilation
    # centred / non-centred per-unit blocks: declared, or chosen now for these data ("auto");
    # the calibrated twin (TwinResult.twin) carries the choice, its hash is the declaration's
    parametrization = twin.parametrization(data) if twin.hierarchy is not None else {}
    twin = twin.with_parametrization(parametrization)
    if not isinstance(collapse_discrepancy, (bool, np.bool_)):
        raise TypeError(f"`collapse_discrepancy` must be True or False, got {collapse_discrepancy!r}.")
    if collapse_discrepancy:
        from ..twin.collapsed import collapsed_model

        if resolved not in ("nutpie", "pymc"):
            raise ValueError(f"collapse_discrepancy=True needs NUTS (method 'nutpie' or 'pymc'), got {resolved!r}.")
        if mass_matrix == "flow":
            raise ValueError("collapse_discrepancy=True does not support mass_matrix='flow'.")
        model = collapsed_model(twin, data, check=False)  # raises when the twin has no collapsed form
    else:
        model = twin.build_model(data, check=False)
    key = (twin.hash + _auto_tag(parametrization) + ("|collapsed" if collapse_discrepancy else ""),
           data.structure_hash)
    return twin, parametrization, model, key


def precompile(jobs: "list[tuple[Twin, TwinData] | tuple[Twin, TwinData, dict[str, Any]]]", *,
               max_workers: int | None = None) -> list[dict[str, Any]]:
    """Compile the nutpie models of several calibrations at once, in parallel child processes.

    Each job is ``(twin, data)`` or ``(twin, data, calibrate_kwargs)`` - what a later
    :func:`calibrate` call will be given. Jobs that calibrate with nutpie's numba backend (the
    default) and are not on disk yet are compiled, each in a forked child, at most
    ``max_workers`` at a time (default: the CPUs), and saved to the on-disk compile cache; the
    later ``calibrate`` loads the saved machine code (``info["compile_cache"] == "disk"``), so its
    draws are exactly those it would have drawn without this call. Compiling is single-threaded:
    on a machine with several cores, independent declarations (candidate twins, a collapsed
    and a latent model, an SBC's model) compile in about the time of the longest one.

    Nothing changes when a child cannot be forked (not Linux, JAX's runtime running, the cache
    switched off): the job's status says so and ``calibrate`` compiles as usual.

    Parameters
    ----------
    jobs : list of tuples
        ``(twin, data[, calibrate_kwargs])``. Of the keyword arguments, ``method``,
        ``backend``, ``mass_matrix`` and ``collapse_discrepancy`` matter (they choose the model
        and its compiler); the others are ignored.
    max_workers : int, optional
        Children compiling at the same time.

    Returns
    -------
    list of dict
        Per job: ``twin`` (name), ``key`` (the compile-cache key or None) and ``status``:
        ``"disk"`` (already compiled), ``"saved"`` (compiled now), ``"not applicable: WHY"``
        (another sampler or backend), ``"skipped: WHY"`` (no child process here), ``"not
        cacheable (...)"`` (``calibrate`` compiles it in-process) or a child's error.
    """
    from ._compile_cache import cache_enabled, cache_key, compile_many

    if max_workers is not None and int(max_workers) < 1:
        raise ValueError(f"`max_workers` must be >= 1 or None, got {max_workers!r}.")
    rows: list[dict[str, Any]] = []
    todo: list[tuple[Any, str]] = []
    for i, job in enumerate(jobs):
        if not isinstance(job, tuple) or len(job) not in (2, 3):
            raise TypeError(f"jobs[{i}] must be (twin, data) or (twin, data, calibrate_kwargs), got {type(job).__name__}.")
        twin, data = job[0], job[1]
        kw = dict(job[2]) if len(job) == 3 else {}
        if not isinstance(twin, Twin) or not isinstance(data, TwinData):
            raise TypeError(f"jobs[{i}] must start with a Twin and a TwinData, got "
                            f"({type(twin).__name__}, {type(data).__name__}).")
        backend = _default_backend(kw.get("backend"))
        mass_matrix = kw.get("mass_matrix", "diag")
        with warnings.catch_warnings():  # the sampler-choice warning belongs to the calibrate call
            warnings.simplefilter("ignore", SamplerChoiceWarning)
            resolved = _resolve_method(twin, kw.get("method", "auto"))
        why = (None if resolved == "nutpie" and backend == "numba" and mass_matrix != "flow" else
               f"calibrates with {resolved}" + (f" ({backend} backend)" if resolved == "nutpie" else "")
               + (", normalising-flow adaptation" if mass_matrix == "flow" else ""))
        if why is None and not cache_enabled():
            why = "the on-disk compile cache is off ($VVUQ_TWIN_COMPILE_CACHE=0)"
        if why is not None:
            rows.append({"twin": twin.name, "key": None, "status": f"not applicable: {why}"})
            continue
        _, _, model, mkey = _model_for(twin, data, resolved=resolved, mass_matrix=mass_matrix,
                                       collapse_discrepancy=bool(kw.get("collapse_discrepancy", False)))
        key = cache_key(*mkey)
        rows.append({"twin": twin.name, "key": key, "status": None})
        todo.append((model, key))
    t0 = time.perf_counter()
    statuses = compile_many(todo, max_workers=max_workers) if todo else {}
    for r in rows:
        if r["status"] is None:
            r["status"] = statuses[r["key"]]
    _log.info("precompile: %d job(s) in %.1f s: %s", len(rows), time.perf_counter() - t0,
              "; ".join(f"{r['twin']}: {r['status']}" for r in rows))
    return rows

def _resolve_method(twin: Twin, method: str) -> str:
    valid = ("auto", "nuts", "nutpie", "pymc", "smc")
    if method not in valid:
        raise ValueError(f"`method` must be one of {valid}, got {method!r}.")
    if method == "auto":
        if twin.has_gradient and is_python_op_simulator(twin.simulator):
            return "auto-cost"  # a black box with a Jacobian: chosen by measured cost
        if twin.has_gradient:
            return "nutpie"
        warnings.warn(
            f"{twin.simulator.no_gradient_reason}; calibrating with SMC (pm.sample_smc, "
            "gradient-free) instead. Provide a gradient to use NUTS.",
            SamplerChoiceWarning,
            stacklevel=3,
        )
        return "smc"
    if method == "nuts":
        method = "nutpie"
        if twin.has_gradient and is_python_op_simulator(twin.simulator):
            # nutpie compiles with numba, which runs a Python Op in object mode; PyMC's NUTS
            # with the pytensor C backend calls the Op's Python code directly
            _log.info("method='nuts' with a Python black-box simulator: using PyMC's NUTS "
                      "(pytensor C backend) rather than nutpie (numba object mode).")
            method = "pymc"
    elif method == "nutpie" and twin.has_gradient and is_python_op_simulator(twin.simulator):
        warnings.warn(
            "method='nutpie' with a Python black-box simulator: nutpie compiles with numba, which "
            "runs the simulator's Op in object mode (slow). method='nuts' or 'auto' uses PyMC's "
            "NUTS with the pytensor C backend instead.",
            SamplerChoiceWarning,
            stacklevel=3,
        )
    if method in ("nutpie", "pymc") and not twin.has_gradient:
        raise CalibrationError(
            f"NUTS needs gradients, but {twin.simulator.no_gradient_reason}. Use method='smc' "
            "(or 'auto'), or give the simulator a jacobian."
        )
    return method


def calibrate(
    twin: Twin,
    data: TwinData,
    *,
    method: Literal["auto", "nuts", "nutpie", "pymc", "smc"] = "auto",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    rng: RNGLike = None,
    target_accept: float | None = None,
    progressbar: bool | None = None,
    posterior_predictive: bool = True,
    cores: int | None = None,
    thresholds: Thresholds | None = None,
    warn: bool = True,
    ledger: Ledger | None = None,
    smc: SMCOptions | dict[str, Any] | None = None,
    backend: Literal["numba", "jax"] | None = None,
    mass_matrix: Literal["diag", "low_rank", "flow"] = "diag",
    collapse_discrepancy: bool = False,
) -> TwinResult:
    """Calibrate ``twin`` to ``data``.

    Parameters
    ----------
    twin : Twin
    data : TwinData
    method : {"auto", "nuts", "nutpie", "pymc", "smc"}
        ``"auto"``: NUTS via nutpie when the simulator is differentiable pytensor; SMC (with a
        :class:`~vvuq_twin.exceptions.SamplerChoiceWarning` saying why) when it has no
        gradient; for a :class:`~vvuq_twin.twin.BlackBoxSimulator` *with* a Jacobian, PyMC's
        NUTS or SMC, whichever a measured cost estimate says is cheaper (a few timed
        evaluations; see :mod:`vvuq_twin.inference.sampler_choice`), recorded in
        ``info["sampler_choice"]`` and logged. ``"nuts"``: nutpie, or PyMC's NUTS for a
        Python black box (nutpie's numba backend would run it in object mode). ``"pymc"``:
        PyMC's own NUTS. ``"smc"``: ``pm.sample_smc`` (multimodal posteriors or no gradient).
    draws, tune, chains : int
        Posterior draws per chain, warm-up iterations (NUTS), number of chains. For SMC:
        particles per run, unused, and independent runs (R-hat is computed across runs).
    rng : Generator, int or None
        Seed; the same seed gives the same draws.
    target_accept : float, optional
        NUTS target acceptance rate, for nutpie and PyMC alike (raise it, e.g. to 0.95, when
        divergences are reported). Default: each sampler's own (nutpie 0.8, PyMC 0.9).
    progressbar : bool or None
        Progress feedback, on by default (``None``; ``VVUQ_TWIN_PROGRESS=0`` turns the default
        off): the sampler's bar in a terminal, periodic plain-text lines on stderr otherwise
        (see :mod:`vvuq_twin.progress`). ``False`` silences it.
    posterior_predictive : bool
        Also draw ``y`` from the posterior predictive.
    cores : int, optional
        Parallel chains (default: number of chains, at most the CPUs).
    thresholds : Thresholds, optional
        Diagnostic thresholds (defaults documented in :mod:`vvuq_twin.inference.diagnostics`).
    warn : bool
        Emit a DiagnosticsWarning when diagnostics fail (default True).
    ledger : Ledger, optional
        Ledger to append the calibration record to (a new one by default).
    smc : SMCOptions or dict, optional
        SMC controls (kernel, tempering and correlation thresholds, parallel runs, SMC
        diagnostic thresholds); see :class:`~vvuq_twin.inference.smc.SMCOptions`. Only for SMC.
    backend : {"numba", "jax"}, optional
        nutpie's compiler for the log density (method "nutpie"). Default: ``$VVUQ_TWIN_BACKEND``
        when set, else ``"numba"``. ``"numba"`` is kept
        compiled on disk across processes (see :mod:`vvuq_twin.inference._compile_cache`;
        ``info["compile_cache_hit"]`` says whether this call reused it); ``"jax"`` needs the
        ``jax`` extra and is compiled anew in every process. See ``benchmarks/RESULTS.md``
        for the measurements behind the default.
    mass_matrix : {"diag", "low_rank", "flow"}
        nutpie's mass-matrix adaptation: diagonal (default), ``"low_rank"`` (diagonal plus
        low-rank corrections from the draws and gradients; helps strongly correlated
        posteriors) or ``"flow"``: nutpie's normalising-flow adaptation (``transform_adapt``), a
        flow fitted during tuning maps the posterior towards a standard normal, for geometry no
        mass matrix fixes (funnels, banana shapes). ``"flow"`` needs the JAX backend and
        flowjax (``pip install 'vvuq-twin[flow]'``); ``backend`` defaults to ``"jax"`` with it.
        It is expensive: tuning trains the flow (minutes even for small twins); see
        ``benchmarks/RESULTS.md``.
    collapse_discrepancy : bool
        Sample the collapsed model (:mod:`vvuq_twin.twin.collapsed`): the coefficients of an
        HSGP discrepancy integrated out of a Gaussian or AR(1) likelihood, NUTS on the physical
        parameters and hyperparameters only, then the coefficients drawn exactly from their
        Gaussian conditional for every draw. The same posterior as the latent model (and the
        same posterior variables), a better geometry when the discrepancy amplitude and the
        noise parameters trade off through the coefficients. NUTS only (nutpie or PyMC).

    Returns
    -------
    TwinResult
        With a pointwise ``log_likelihood`` group (closed form for Gaussian, Student-t and
        log-normal observations; otherwise call ``res.compute_log_likelihood()``).

    Raises
    ------
    ValueError, TypeError
        Invalid arguments (checked before anything is built or compiled).
    SimulatorCalibrationError
        The simulator raised or returned NaN/inf (or the wrong shape) while sampling; the
        message names the parameter values. With every sampler this ends calibration - it is not
        counted as a rejected proposal. It is both a SimulatorError and a CalibrationError.
    SimulatorInstabilityError
        Posterior draws met non-finite, absurd or (ODE) beyond-tolerance simulator output
        (see :mod:`vvuq_twin.inference.simcheck`); the result is attached as ``.result``.
    CalibrationError
        The sampler failed.
    """
    check_calibrate_args(twin, data, method=method, draws=draws, tune=tune, chains=chains, rng=rng,
                         target_accept=target_accept, progressbar=progressbar,
                         posterior_predictive=posterior_predictive, cores=cores,
                         thresholds=thresholds, warn=warn, ledger=ledger)  # before any compile
    draws, tune, chains = int(draws), int(tune), int(chains)
    for nm, v in (("draws", draws), ("chains", chains)):
        if int(v) < 1:
            raise ValueError(f"`{nm}` must be >= 1, got {v}.")
    if int(tune) < 0:
        raise ValueError(f"`tune` must be >= 0, got {tune}.")
    if target_accept is not None and not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"`target_accept` must lie in (0, 1), got {target_accept}.")
    if mass_matrix not in ("diag", "low_rank", "flow"):
        raise ValueError(f"`mass_matrix` must be 'diag', 'low_rank' or 'flow', got {mass_matrix!r}.")
    if mass_matrix == "flow":
        if backend not in (None, "jax"):
            raise ValueError(f"mass_matrix='flow' (nutpie's normalising-flow adaptation) runs on the JAX backend "
                             f"only, got backend={backend!r}: pass backend='jax' or leave it unset.")
        backend = "jax"
        import importlib.util

        missing = [m for m in ("jax", "flowjax") if importlib.util.find_spec(m) is None]
        if missing:
            raise ImportError(f"mass_matrix='flow' needs {' and '.join(missing)}: pip install 'vvuq-twin[flow]' "
                              "(or use mass_matrix='low_rank').")
    backend = _default_backend(backend)
    if backend not in ("numba", "jax"):
        raise ValueError(f"`backend` (or $VVUQ_TWIN_BACKEND) must be 'numba' or 'jax', got {backend!r}.")
    if backend == "jax":
        import importlib.util

        if importlib.util.find_spec("jax") is None:
            raise ImportError("backend='jax' needs jax: pip install 'vvuq-twin[jax]' (or use backend='numba').")
    gen = as_generator(rng)
    seed_sample, seed_pp = spawn_seeds(gen, 2)
    resolved = _resolve_method(twin, method)
    smc_opts = SMCOptions.coerce(smc)
    if smc is not None and resolved in ("nutpie", "pymc"):
        raise ValueError(
            f"`smc` options were given but the twin is calibrated with {resolved} (NUTS); pass "
            "method='smc' (or 'auto' for a simulator without a gradient), or drop `smc`."
        )
    twin, parametrization, model, model_key = _model_for(twin, data, resolved=resolved, mass_matrix=mass_matrix,
                                                        collapse_discrepancy=collapse_discrepancy)
    for pname, rec in parametrization.items():
        if rec["source"] == "auto":
            _log.info("calibrate(%s): %s %s (%s).", twin.name, pname,
                      "centred" if rec["centered"] else "non-centred", rec["reason"])
    t0 = time.perf_counter()
    compile_time = 0.0
    compile_status: dict[str, Any] = {"compile_cache_hit": False, "compile_cache": "none"}

    ncores = cores if cores is not None else max(1, min(chains, os.cpu_count() or 1))
    choice: dict[str, Any] | None = None
    if resolved == "auto-cost":
        resolved, choice = choose_sampler_by_cost(
            model, draws=draws, tune=tune, chains=chains, cores=ncores, rng=seed_sample,
        )
        _log.info("calibrate(%s): %s", twin.name, choice["reason"])
    # chains run in parallel threads/processes: give each at most its share of the CPUs for
    # BLAS/LAPACK (OpenBLAS threads of parallel chains oversubscribe the cores; measured on 2
    # cores: a 1000 x 1000 Cholesky took 1.15 s with 2 BLAS threads per chain, 0.04 s with 1)
    from threadpoolctl import threadpool_limits

    blas = threadpool_limits(limits=max(1, (os.cpu_count() or 1) // ncores), user_api="blas")
    prog = Progress(f"calibrate twin {twin.name!r} ({resolved}, {chains} chains x {tune} tune + "
                    f"{draws} draws)", progress_enabled(progressbar))
    progressbar = prog.bar
    prog.__enter__()
    try:
        if resolved == "nutpie":
            try:
                y_now = np.asarray(data.y, float)[np.asarray(data.observed_mask)]
                compiled, compile_status = _nutpie_compiled(model, model_key, y_now, backend=backend,
                                                            frozen=mass_matrix == "flow")
                compile_time = compile_status["compile_time_s"]
            except Exception as exc:  # noqa: BLE001 - fall back loudly
                warnings.warn(
                    f"nutpie could not compile this twin ({type(exc).__name__}: {exc}); falling "
                    "back to PyMC's NUTS (pm.sample).",
                    SamplerChoiceWarning,
                    stacklevel=2,
                )
                resolved = "pymc"
        if resolved == "nutpie":
            import nutpie

            ts = time.perf_counter()
            extra = {} if target_accept is None else {"target_accept": float(target_accept)}
            if mass_matrix == "low_rank":
                extra["low_rank_modified_mass_matrix"] = True
            elif mass_matrix == "flow":
                extra["transform_adapt"] = True
            kw = dict(draws=draws, tune=tune, chains=chains, cores=ncores, seed=seed_sample,
                      progress_bar=progressbar, save_warmup=False, **extra)
            from ._overlap import overlap_enabled, sample_overlapped

            if overlap_enabled():
                # the main thread imports what the next steps need while nutpie samples in its
                # own threads (same draws as blocking=True; see _overlap)
                idata, overlap = sample_overlapped(nutpie, compiled, **kw)
                _log.debug("calibrate(%s): while sampling: %s (%.3f s)", twin.name,
                           ", ".join(overlap["steps"]) or "nothing left to do", overlap["seconds"])
            else:
                idata = nutpie.sample(compiled, **kw)
            sample_time = time.perf_counter() - ts
        elif resolved == "pymc":
            ts = time.perf_counter()
            with model:
                idata = pm.sample(
                    draws=draws, tune=tune, chains=chains, cores=ncores, random_seed=seed_sample,
                    target_accept=0.9 if target_accept is None else float(target_accept), progressbar=progressbar,
                    compute_convergence_checks=False,
                )
            sample_time = time.perf_counter() - ts
        else:
            ts = time.perf_counter()
            # independent runs in parallel processes through PyMC's SMC process pool (it
            # re-uses the compiled kernel; vvuq_twin.ensembles returns numeric arrays per input
            # row and would have to recompile the model in every worker)
            smc_cores = max(1, min(ncores, chains)) if smc_opts.parallel else 1
            smc_mode = (f"{chains} runs in {smc_cores} parallel processes" if smc_cores > 1 else
                        f"{chains} run(s) sequentially in this process ("
                        + ("SMCOptions(parallel=False)" if not smc_opts.parallel else
                           f"cores={ncores}" if chains > 1 else "one run") + ")")
            _log.info("calibrate(%s): SMC, %s kernel, %d particles per run, %s.", twin.name,
                      smc_opts.kernel.upper(), draws, smc_mode)
            smc_cost = None
            if is_python_op_simulator(twin.simulator):
                # feedback before a long run: time the likelihood and say what to expect
                from .sampler_choice import SMC_LOGPS_PER_PARTICLE, measure_model_cost

                smc_cost = measure_model_cost(model, n_evals=3, rng=seed_sample, gradient=False)
                smc_cost["estimated_sample_time_s"] = (
                    chains * draws * SMC_LOGPS_PER_PARTICLE * smc_cost["logp_s"] / smc_cores)
                _log.info("calibrate(%s): %.3g ms per log density (black box); expect at least "
                          "%.2g s of SMC (planning %d evaluations per particle, on uncontended "
                          "cores; logger 'vvuq_twin.smc' reports each stage)%s.", twin.name,
                          smc_cost["logp_s"] * 1e3, smc_cost["estimated_sample_time_s"],
                          SMC_LOGPS_PER_PARTICLE, "" if progressbar else "; progressbar=True shows a bar")
            ts = time.perf_counter()
            with model:
                idata = pm.sample_smc(
                    draws=draws, chains=chains, cores=smc_cores, random_seed=seed_sample,
                    progressbar=progressbar, compute_convergence_checks=False,
                    **smc_opts.sampler_kwargs(),
                )
            idata.sample_stats = smc_sample_stats(
                idata.sample_stats, nchain=int(idata.posterior.sizes["chain"]), kernel=smc_opts.kernel,
            )
            sample_time = time.perf_counter() - ts
    except Exception as exc:
        prog.__exit__(type(exc), exc, None)
        sim_err = _simulator_error_in(exc)
        if sim_err is not None:  # the simulator's own error, naming its parameter values
            raise SimulatorCalibrationError(
                f"Sampling twin {twin.name!r} with {resolved} stopped: "
                + str(sim_err).split("\nApply node")[0]) from exc
        raise CalibrationError(
            f"Sampling twin {twin.name!r} with {resolved} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        blas.restore_original_limits()
    prog.__exit__(None, None, None)
    idata, sim_accuracy = pop_accuracy(idata)
    if collapse_discrepancy:
        idata = _add_collapsed_coefficients(idata, twin, data, seed_pp)
    with small_matrix_threads(data.n):
        # the model is built for PyMC's forward sampler only when the numpy path cannot serve
        pp_model = (lambda: twin.build_model(data, check=False, conditional_roles=True)) \
            if twin.marginal_discrepancy() else (lambda: model)
        if collapse_discrepancy:  # the latent model computes delta and zeta from the coefficients
            pp_model = lambda: twin.build_model(data, check=False)  # noqa: E731
        idata = _arrange_groups(idata, pp_model, data, posterior_predictive, seed_pp, twin=twin)
    diags = compute_diagnostics(
        idata, sampler=resolved, thresholds=thresholds,
        var_names=[v for v in idata.posterior.data_vars],
    )
    if resolved == "smc":
        diags.checks.update(smc_checks(idata.sample_stats, smc_opts))
    if warn:
        diags.warn()
    info = {
        "sampler": resolved,
        "requested_method": method,
        "draws": int(draws),
        "tune": int(tune),
        "chains": int(chains),
        "seed_sample": int(seed_sample),
        "seed_posterior_predictive": int(seed_pp),
        "compile_time_s": float(compile_time),
        "backend": backend if resolved == "nutpie" else None,
        "mass_matrix": mass_matrix if resolved == "nutpie" else None,
        "collapse_discrepancy": bool(collapse_discrepancy),
        "compile_cache_hit": bool(compile_status.get("compile_cache_hit", False)),
        "compile_cache": str(compile_status.get("compile_cache", "none")),
        "sample_time_s": float(sample_time),
        "total_time_s": float(time.perf_counter() - t0),
        "versions": _versions(),
    }
    if parametrization:
        info["parametrization"] = parametrization
    if resolved == "smc":
        # what SMC actually used: particles and runs, no warm-up
        del info["tune"]
        info["smc"] = {"particles_per_run": int(draws), "runs": int(chains), **smc_opts.to_dict(),
                       "mode": smc_mode, "processes": int(smc_cores),
                       **smc_summary(idata.sample_stats)}
        steps = np.asarray(idata.sample_stats["stage_mcmc_steps"], dtype=float)
        info["smc"]["likelihood_evaluations"] = int(draws * (np.nansum(steps) + steps.shape[0]))
        if smc_cost is not None:
            info["smc"]["cost_estimate"] = smc_cost
    if choice is not None:
        info["sampler_choice"] = choice
    led = ledger if ledger is not None else Ledger()
    led.record(
        "calibration", "sampler_diagnostics", twin=twin, data_hash=data.hash,
        passed=diags.passed, result={"sampler": resolved, **{k: v["value"] for k, v in diags.checks.items()}},
    )
    auto = {k: v for k, v in parametrization.items() if v["source"] == "auto"}
    if auto:  # what was chosen for the declaration's "auto" blocks, and why
        led.record("calibration", "parametrization", twin=twin, data_hash=data.hash, passed=None,
                   result={k: {"centered": v["centered"], "reason": v["reason"]} for k, v in auto.items()})
    res = TwinResult(
        idata=idata, twin=twin, data=data, declaration_hash=twin.hash, data_hash=data.hash,
        diagnostics=diags, ledger=led, info=info,
    )
    check_calibration(res, sim_accuracy)  # non-finite / absurd / inaccurate simulator output
    if has_closed_form(twin):  # pointwise log-likelihood for az.loo (closed form, no compile)
        res.compute_log_likelihood()
    return res


def _add_collapsed_coefficients(idata, twin: Twin, data: TwinData, seed: int):
    """The collapsed model's posterior with the HSGP coefficients drawn from their exact
    Gaussian conditional (one draw per posterior draw; seeded from ``seed``), and ``delta``,
    ``zeta`` computed from them: the posterior variables of the latent model."""
    from ..twin.collapsed import latent_posterior_variables

    post = idata.posterior
    nc, nd = int(post.sizes["chain"]), int(post.sizes["draw"])
    flat = {k: np.asarray(post[k].values, float).reshape(nc * nd, *post[k].shape[2:]) for k in post.data_vars}
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    new = {}
    for k, v in latent_posterior_variables(twin, data, flat, rng).items():
        # per-observation variables on eta's dims, the coefficients on their own
        dims = post["eta"].dims if v.shape[1] == data.n and k in ROLE_DETERMINISTICS else ("chain", "draw", f"{k}_dim_0")
        new[k] = xr.DataArray(v.reshape(nc, nd, -1), dims=dims, coords={"chain": post["chain"], "draw": post["draw"]})
    idata.posterior = post.assign(**new)
    return idata


def _arrange_groups(idata, model, data: TwinData, posterior_predictive: bool, seed: int,
                    twin: Twin | None = None):
    """Move role Deterministics to posterior_predictive, add y draws and observed data.

    ``model`` is the PyMC model (or a function building it, called only when needed). With
    ``twin``, the draws come from the numpy path of ``_fast_predictive`` where it applies.
    """
    post = idata.posterior
    roles = [v for v in ROLE_DETERMINISTICS if v in post]
    # internal variables: the latent GP duplicate and sampler-space (transformed) values
    internal = [v for v in post.data_vars if v == "delta_gp" or v.endswith("__")]
    # PyMC's own auxiliary variables (e.g. the latent GP's non-centred `delta_gp_rotated_`) are
    # needed to predict but are not parameters: kept in their own group, out of the posterior
    latent = [v for v in post.data_vars if v.endswith("_rotated_") and v not in internal]
    pp = post[roles]
    new_post = post.drop_vars(roles + internal + latent)
    missing_roles = [v for v in ROLE_DETERMINISTICS if v not in post]
    want = missing_roles + (["y"] if posterior_predictive else [])
    drawn = None
    if want and twin is not None:
        from ._fast_predictive import posterior_predictive_numpy

        drawn = posterior_predictive_numpy(twin, data, post, want, seed)
        if drawn is not None:
            pp = xr.merge([pp, drawn], compat="override", join="left")
            pp = pp[[v for v in (*ROLE_DETERMINISTICS, "y") if v in pp]]
    if want and drawn is None:
        if callable(model) and not isinstance(model, pm.Model):
            model = model()
        # without posterior_predictive the draw of the role variables (delta of a marginalised
        # GP) is internal: PyMC's "Sampling: [delta]" line is not shown
        forward_log = logging.getLogger("pymc.sampling.forward")
        level = forward_log.level
        if not posterior_predictive:
            forward_log.setLevel(logging.WARNING)
        try:
            with model:
                ppc = pm.sample_posterior_predictive(
                    az.InferenceData(posterior=post.drop_vars(internal)),
                    var_names=want, random_seed=seed, progressbar=False,
                    return_inferencedata=True,
                )
        finally:
            forward_log.setLevel(level)
        drawn = ppc.posterior_predictive[want]
        pp = xr.merge([pp, drawn], compat="override", join="left")
        pp = pp[[v for v in (*ROLE_DETERMINISTICS, "y") if v in pp]]
    out = az.InferenceData(
        posterior=new_post,
        posterior_predictive=pp,
        sample_stats=idata.sample_stats if "sample_stats" in idata.groups() else xr.Dataset(),
        **data_groups(data),
    )
    if latent:
        add_latent_group(out, post[latent])
    return out


def _auto_tag(parametrization: dict[str, dict[str, Any]]) -> str:
    """Suffix of the compile-cache key naming the choices made for ``centered="auto"`` blocks,
    now or before (a twin fixed by ``with_parametrization`` keeps the "auto" declaration's hash);
    empty when there are none, so that other twins keep their keys."""
    auto = sorted((k, bool(v["centered"])) for k, v in parametrization.items()
                  if v["source"] in ("auto", "chosen"))
    return "" if not auto else "|auto:" + ",".join(f"{k}={'c' if c else 'nc'}" for k, c in auto)


def _simulator_error_in(exc: BaseException) -> SimulatorError | None:
    """The SimulatorError behind a sampler's exception (also across PyMC's worker processes)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, SimulatorError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("vvuq-twin", "pymc", "pytensor", "arviz", "nutpie", "numpy", "xarray"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


