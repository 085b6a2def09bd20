"""Calibrate a twin: NUTS through nutpie by default, PyMC's NUTS as fallback, SMC on request.

Compiled models are cached in memory, keyed by the declaration hash and the data's *structure*
hash (inputs, units, known sds, missing mask - not the observed values, which live in a data
container): recalibrating the same twin with another seed or more draws, or on new
observations at the same inputs (simulation-based calibration, repeated experiments), does not
compile again.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from typing import Any, Literal

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from .._rng import RNGLike, as_generator, spawn_seeds
from ..progress import Progress, progress_enabled
from ..exceptions import CalibrationError, SamplerChoiceWarning
from ..twin.data import TwinData
from ..twin.declaration import OBSERVED_DATA_NAME, Twin
from .diagnostics import Thresholds, compute_diagnostics
from .ledger import Ledger
from .results import TwinResult, add_latent_group, data_groups
from .loglik import has_closed_form
from .simcheck import check_calibration, pop_accuracy

__all__ = ["calibrate", "clear_compile_cache", "ROLE_DETERMINISTICS"]

#: Deterministics moved from the posterior to the posterior predictive group
ROLE_DETERMINISTICS = ("eta", "delta", "zeta")

_CACHE: "OrderedDict[tuple[str, str], Any]" = OrderedDict()
_CACHE_SIZE = 16


def clear_compile_cache() -> None:
    """Forget all cached compiled models."""
    _CACHE.clear()


def _nutpie_compiled(model: pm.Model, key: tuple[str, str], y_observed: np.ndarray | None = None):
    import nutpie

    if key in _CACHE:
        _CACHE.move_to_end(key)
        compiled = _CACHE[key]
        if y_observed is not None:
            compiled = compiled.with_data(**{OBSERVED_DATA_NAME: y_observed})
        return compiled, 0.0
    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    dt = time.perf_counter() - t0
    _CACHE[key] = compiled
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return compiled, dt


def _resolve_method(twin: Twin, method: str) -> str:
    valid = ("auto", "nuts", "nutpie", "pymc", "smc")
    if method not in valid:
        raise ValueError(f"`method` must be one of {valid}, got {method!r}.")
    if method == "auto":
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
) -> TwinResult:
    """Calibrate ``twin`` to ``data``.

    Parameters
    ----------
    twin : Twin
    data : TwinData
    method : {"auto", "nuts", "nutpie", "pymc", "smc"}
        ``"auto"``: NUTS via nutpie when the simulator has gradients, else SMC (with a
        :class:`~vvuq_twin.exceptions.SamplerChoiceWarning` saying why). ``"pymc"``: PyMC's own
        NUTS. ``"smc"``: ``pm.sample_smc`` (for multimodal posteriors or no gradient).
    draws, tune, chains : int
        Posterior draws per chain, warm-up iterations (NUTS), number of chains.
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

    Returns
    -------
    TwinResult
        With a pointwise ``log_likelihood`` group (closed form for Gaussian, Student-t and
        log-normal observations; otherwise call ``res.compute_log_likelihood()``).

    Raises
    ------
    SimulatorInstabilityError
        Posterior draws met non-finite, absurd or (ODE) beyond-tolerance simulator output
        (see :mod:`vvuq_twin.inference.simcheck`); the result is attached as ``.result``.
    CalibrationError
        The sampler failed.
    """
    for nm, v in (("draws", draws), ("chains", chains)):
        if int(v) < 1:
            raise ValueError(f"`{nm}` must be >= 1, got {v}.")
    if int(tune) < 0:
        raise ValueError(f"`tune` must be >= 0, got {tune}.")
    if target_accept is not None and not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"`target_accept` must lie in (0, 1), got {target_accept}.")
    gen = as_generator(rng)
    seed_sample, seed_pp = spawn_seeds(gen, 2)
    resolved = _resolve_method(twin, method)
    twin.check(data)  # validation before any compilation
    model = twin.build_model(data, check=False)
    t0 = time.perf_counter()
    compile_time = 0.0
    import os

    ncores = cores if cores is not None else max(1, min(chains, os.cpu_count() or 1))
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
                compiled, compile_time = _nutpie_compiled(model, (twin.hash, data.structure_hash), y_now)
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
            idata = nutpie.sample(
                compiled, draws=draws, tune=tune, chains=chains, cores=ncores,
                seed=seed_sample, progress_bar=progressbar, save_warmup=False, **extra,
            )
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
            with model:
                idata = pm.sample_smc(
                    draws=draws, chains=chains, cores=1, random_seed=seed_sample,
                    progressbar=progressbar, compute_convergence_checks=False,
                )
            sample_time = time.perf_counter() - ts
    except Exception as exc:
        prog.__exit__(type(exc), exc, None)
        raise CalibrationError(
            f"Sampling twin {twin.name!r} with {resolved} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        blas.restore_original_limits()
    prog.__exit__(None, None, None)
    pp_model = twin.build_model(data, check=False, conditional_roles=True) if twin.marginal_discrepancy() else model
    idata, sim_accuracy = pop_accuracy(idata)
    idata = _arrange_groups(idata, pp_model, data, posterior_predictive, seed_pp)
    diags = compute_diagnostics(
        idata, sampler=resolved, thresholds=thresholds,
        var_names=[v for v in idata.posterior.data_vars],
    )
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
        "sample_time_s": float(sample_time),
        "total_time_s": float(time.perf_counter() - t0),
        "versions": _versions(),
    }
    led = ledger if ledger is not None else Ledger()
    led.record(
        "calibration", "sampler_diagnostics", twin=twin, data_hash=data.hash,
        passed=diags.passed, result={"sampler": resolved, **{k: v["value"] for k, v in diags.checks.items()}},
    )
    res = TwinResult(
        idata=idata, twin=twin, data=data, declaration_hash=twin.hash, data_hash=data.hash,
        diagnostics=diags, ledger=led, info=info,
    )
    check_calibration(res, sim_accuracy)  # non-finite / absurd / inaccurate simulator output
    if has_closed_form(twin):  # pointwise log-likelihood for az.loo (closed form, no compile)
        res.compute_log_likelihood()
    return res


def _arrange_groups(idata, model, data: TwinData, posterior_predictive: bool, seed: int):
    """Move role Deterministics to posterior_predictive, add y draws and observed data."""
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
    if want:
        with model:
            ppc = pm.sample_posterior_predictive(
                az.InferenceData(posterior=post.drop_vars(internal)),
                var_names=want, random_seed=seed, progressbar=False,
                return_inferencedata=True,
            )
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


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("vvuq-twin", "pymc", "pytensor", "arviz", "nutpie", "numpy", "xarray"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


