"""Sequential Monte Carlo as a documented calibration path.

:func:`~vvuq_twin.inference.calibrate` with ``method="smc"`` runs ``pm.sample_smc``: ``chains``
independent SMC runs of ``draws`` particles each, tempering the likelihood from the prior
(``beta = 0``) to the posterior (``beta = 1``). This module supplies

* :class:`SMCOptions` - the controls (kernel, tempering threshold, MCMC correlation threshold,
  parallel runs) and the SMC-specific diagnostic thresholds;
* the kernels ``"imh"`` (independent Metropolis-Hastings, PyMC's default) and ``"mh"``
  (random-walk Metropolis-Hastings), each recording per stage the tempering exponent, the
  acceptance rate, the importance-sampling effective sample size and the number of MCMC steps;
* :func:`smc_sample_stats` - PyMC's SMC ``sample_stats`` (ragged object arrays, a ``draw`` dim
  that really counts stages, a variable ``beta`` that reads like a parameter) turned into
  numeric arrays with named dims, so that SMC results save to NetCDF like NUTS results:

  ========================================  ======================  =====================================
  variable                                  dims                    meaning
  ========================================  ======================  =====================================
  ``tempering_beta``                        (chain, stage)          inverse temperature after each stage
  ``stage_accept_rate``                     (chain, stage)          mean MCMC acceptance in each stage
  ``stage_ess``                             (chain, stage)          importance-weight ESS of each stage
  ``stage_mcmc_steps``                      (chain, stage)          MCMC steps taken in each stage
  ``log_marginal_likelihood``               (chain,)                estimate of log p(y) of each run
  ``n_stages``                              (chain,)                stages each run took
  ========================================  ======================  =====================================

  Runs that took fewer stages are padded with NaN (``n_stages`` says where each run ends);
* :func:`smc_checks` - diagnostics that mean something for SMC (added to the R-hat across
  independent runs and the ESS that :func:`~vvuq_twin.inference.diagnostics.compute_diagnostics`
  computes for every sampler): the lowest per-stage acceptance rate (a stage that barely moves
  the particles leaves duplicates behind) and the spread of ``log p(y)`` across runs (runs that
  found different posterior mass disagree on it).

Cost model (per run): ``sum over stages of draws * stage_mcmc_steps`` likelihood evaluations,
no gradients; ``info["smc"]["likelihood_evaluations"]`` reports the count actually made, and for
a black box ``info["smc"]["cost_estimate"]`` the timed evaluations and the expected time logged
before the run.

Parallel runs use PyMC's own SMC process pool (one process per run, at most ``cores``; with
``cores=1`` or ``SMCOptions(parallel=False)`` runs are sequential, and ``info["smc"]["mode"]``
says which). Not :mod:`vvuq_twin.ensembles`: ``ensembles.evaluate`` maps rows of numeric
inputs to numeric outputs; an SMC run returns particles plus ragged stage statistics from a
compiled kernel, which PyMC's pool hands to its workers without recompiling the model.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr
from pymc.smc.kernels import IMH, MH

__all__ = ["SMCOptions", "smc_sample_stats", "smc_checks", "is_raw_smc_stats"]

_log = logging.getLogger("vvuq_twin.smc")


class _StageStats:
    """Mixin: per-stage importance ESS and MCMC steps on top of the kernel's own stats, and a
    log line per stage (logger ``vvuq_twin.smc``, INFO) as feedback during long runs."""

    def sample_stats(self):  # type: ignore[override]
        out = dict(super().sample_stats())  # type: ignore[misc]
        w = np.asarray(self.weights, dtype=float)  # type: ignore[attr-defined]
        out["ess"] = float(1.0 / np.sum(w**2)) if w.size else np.nan
        # PyMC's IMH and MH mutate() start n_steps at 1 and count one past the steps taken
        out["n_steps"] = max(0, int(getattr(self, "n_steps", 1)) - 1)
        now = time.perf_counter()
        it = int(getattr(self, "iteration", 0))
        if it <= 1 or not hasattr(self, "_vt_t0"):
            self._vt_t0 = now
        acc = out.get("accept_rate", out.get("mean_accept_rate", np.nan))
        _log.info("SMC run (pid %d) stage %d: tempering beta %.4g, acceptance %.2f, %d MCMC steps, "
                  "ESS %.0f, %.1f s since stage 1", os.getpid(), it, float(out["beta"]), float(acc),
                  out["n_steps"], out["ess"], now - self._vt_t0)
        return out


class IMHStats(_StageStats, IMH):
    """PyMC's IMH kernel, also recording the stage ESS and MCMC steps."""

    stats_dtypes_shapes = {**IMH.stats_dtypes_shapes, "ess": (float, []), "n_steps": (int, [])}


class MHStats(_StageStats, MH):
    """PyMC's random-walk MH kernel, also recording the stage ESS and MCMC steps."""

    stats_dtypes_shapes = {**MH.stats_dtypes_shapes, "ess": (float, []), "n_steps": (int, [])}


_KERNELS = {"imh": IMHStats, "mh": MHStats}


@dataclass(frozen=True)
class SMCOptions:
    """Controls of SMC calibration (``calibrate(..., method="smc", smc=SMCOptions(...))``).

    The number of particles per run is ``calibrate``'s ``draws``; the number of independent
    runs is ``chains`` (R-hat is computed across runs). ``tune`` is not used by SMC.

    Parameters
    ----------
    kernel : {"imh", "mh"}
        MCMC move in each stage: independent Metropolis-Hastings with a Gaussian proposal fitted
        to the current particles (PyMC's default; good for unimodal, roughly Gaussian
        posteriors) or random-walk Metropolis-Hastings (more robust for curved or multimodal
        posteriors, more steps).
    threshold : float
        Tempering threshold in (0, 1): each next inverse temperature is chosen so that the
        importance-weight ESS is ``threshold * draws``. Higher means more, smaller stages.
    correlation_threshold : float
        In (0, 1): MCMC steps in a stage continue while the particles' correlation with the
        stage start drops by more than this per step. Lower means more steps per stage.
    parallel : bool
        Run independent runs in parallel processes (PyMC's SMC process pool, at most
        ``cores``); False runs them one after another in this process.
    min_accept_rate : float
        Diagnostic threshold: the lowest per-stage acceptance rate in any run.
    max_log_ml_spread : float
        Diagnostic threshold: largest allowed ``max - min`` of the log marginal likelihood
        estimates across runs (nats).
    """

    kernel: Literal["imh", "mh"] = "imh"
    threshold: float = 0.5
    correlation_threshold: float = 0.01
    parallel: bool = True
    min_accept_rate: float = 0.05
    max_log_ml_spread: float = 1.0

    def __post_init__(self) -> None:
        if self.kernel not in _KERNELS:
            raise ValueError(f"SMCOptions.kernel must be one of {sorted(_KERNELS)}, got {self.kernel!r}.")
        for nm in ("threshold", "correlation_threshold"):
            v = float(getattr(self, nm))
            if not 0.0 < v < 1.0:
                raise ValueError(f"SMCOptions.{nm} must lie in (0, 1), got {v}.")
        if not 0.0 <= float(self.min_accept_rate) < 1.0:
            raise ValueError(f"SMCOptions.min_accept_rate must lie in [0, 1), got {self.min_accept_rate}.")
        if not float(self.max_log_ml_spread) > 0.0:
            raise ValueError(f"SMCOptions.max_log_ml_spread must be > 0, got {self.max_log_ml_spread}.")

    @classmethod
    def coerce(cls, value: "SMCOptions | dict[str, Any] | None") -> "SMCOptions":
        """Accept an ``SMCOptions``, a dict of its fields, or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise ValueError(
                    f"Unknown SMC option(s) {unknown}; valid: {sorted(cls.__dataclass_fields__)}."
                )
            return cls(**value)
        raise TypeError(f"`smc` must be SMCOptions, a dict or None, got {type(value).__name__}.")

    @property
    def kernel_class(self):
        return _KERNELS[self.kernel]

    def sampler_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pm.sample_smc``."""
        return {"kernel": self.kernel_class, "threshold": float(self.threshold),
                "correlation_threshold": float(self.correlation_threshold)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_RENAME = {
    "beta": "tempering_beta",
    "accept_rate": "stage_accept_rate",
    "mean_accept_rate": "stage_accept_rate",
    "ess": "stage_ess",
    "n_steps": "stage_mcmc_steps",
    "mean_proposal_scale": "stage_proposal_scale",
}


def is_raw_smc_stats(stats: xr.Dataset | None) -> bool:
    """Whether ``stats`` is PyMC's raw SMC sample_stats (a ``beta`` schedule, object arrays)."""
    if stats is None or "beta" not in stats.data_vars:
        return False
    return "log_marginal_likelihood" in stats.data_vars


def _per_chain(raw: np.ndarray, nchain: int) -> list[np.ndarray]:
    """Per-run float arrays of per-stage values from any of PyMC's layouts.

    PyMC stores one run as a numeric ``(1, stage)`` array, runs with equal stage counts as an
    object ``(chain, stage)`` array, and runs with unequal counts as a ``(1, chain)`` object
    array of lists (its ``chain`` dim then counts nothing).
    """
    flat = np.asarray(raw, dtype=object).ravel().tolist()
    if any(isinstance(e, (list, tuple, np.ndarray)) for e in flat):
        runs = [np.asarray([float(v) for v in np.ravel(np.asarray(e, dtype=object)).tolist()], dtype=float)
                for e in flat]
    else:
        arr = np.asarray([float(v) for v in flat], dtype=float)
        runs = list(arr.reshape(nchain, -1)) if arr.size % max(nchain, 1) == 0 else [arr]
    if len(runs) != nchain:
        raise ValueError(
            f"SMC sample_stats hold {len(runs)} runs but the posterior has {nchain} chains; "
            "cannot convert them."
        )
    return runs


def smc_sample_stats(stats: xr.Dataset, *, nchain: int | None = None, kernel: str | None = None) -> xr.Dataset:
    """Turn PyMC's SMC ``sample_stats`` into numeric arrays with named dims.

    Parameters
    ----------
    stats : xarray.Dataset
        ``idata.sample_stats`` of ``pm.sample_smc`` (any kernel). A dataset that is already
        converted is returned unchanged.
    nchain : int, optional
        Number of independent runs (the posterior's ``chain`` size); needed because PyMC's
        layout of runs with unequal stage counts does not say it. Default: ``stats``'s chain size.
    kernel : str, optional
        Name of the kernel, stored in the attributes.

    Returns
    -------
    xarray.Dataset
        Variables as in the module table, dims ``chain`` and ``stage`` (NaN-padded), float64 /
        int64 only, so it writes to NetCDF.
    """
    if not is_raw_smc_stats(stats):
        return stats
    if nchain is None:
        nchain = int(stats.sizes.get("chain", 1))
    chains = np.arange(nchain)
    per_var = {str(v): _per_chain(stats[v].values, nchain) for v in stats.data_vars}
    n_stages = np.array([len(s) for s in per_var["beta"]], dtype=np.int64)
    # within a run, the schedule ends at the first beta == 1; padding (if any) after it is NaN
    for c in range(nchain):
        b = per_var["beta"][c]
        hit = np.flatnonzero(b >= 1.0)
        if hit.size:
            n_stages[c] = int(hit[0]) + 1
    smax = int(n_stages.max()) if n_stages.size else 0
    data_vars: dict[str, Any] = {}
    for v, rows in per_var.items():
        if v == "log_marginal_likelihood":
            continue
        name = _RENAME.get(v, f"stage_{v}")
        mat = np.full((nchain, smax), np.nan)
        for c, r in enumerate(rows):
            k = min(int(n_stages[c]), r.size)
            mat[c, :k] = r[:k]
        data_vars[name] = (("chain", "stage"), mat)
    lml = np.full(nchain, np.nan)
    for c, r in enumerate(per_var["log_marginal_likelihood"]):
        fin = r[: int(n_stages[c])][np.isfinite(r[: int(n_stages[c])])]
        if fin.size:
            lml[c] = float(fin[-1])
    data_vars["log_marginal_likelihood"] = (("chain",), lml)
    data_vars["n_stages"] = (("chain",), n_stages)
    attrs = {}
    for k, val in stats.attrs.items():
        if isinstance(val, (bool, np.bool_)):
            attrs[k] = int(val)
        elif isinstance(val, (int, float, str, np.integer, np.floating)):
            attrs[k] = val
    # PyMC's "_n_tune" is the MCMC steps of the last stage only (stage_mcmc_steps has them all)
    attrs = {k.lstrip("_"): v for k, v in attrs.items() if k != "_n_tune"}
    attrs["sampler"] = "smc"
    if kernel is not None:
        attrs["kernel"] = kernel
    attrs["description"] = (
        "SMC stage statistics: tempering_beta is the inverse temperature (0 = prior, 1 = "
        "posterior) reached after each stage, not a model parameter; runs with fewer stages "
        "are NaN-padded (see n_stages)."
    )
    return xr.Dataset(data_vars, coords={"chain": chains, "stage": np.arange(smax)}, attrs=attrs)


def smc_checks(stats: xr.Dataset, options: SMCOptions) -> dict[str, dict[str, Any]]:
    """SMC-specific diagnostic checks on converted stats (see :func:`smc_sample_stats`).

    Returns
    -------
    dict
        ``{"smc_accept_rate": {...}, "smc_log_ml_spread": {...}}`` in the format of
        :attr:`Diagnostics.checks` (``value``, ``threshold``, ``passed``, ``worst``). The spread
        check is present only with two or more runs.
    """
    out: dict[str, dict[str, Any]] = {}
    acc = np.asarray(stats["stage_accept_rate"], dtype=float)
    if np.isfinite(acc).any():
        amin = float(np.nanmin(acc))
        c, s = np.unravel_index(int(np.nanargmin(acc)), acc.shape)
        out["smc_accept_rate"] = {
            "value": amin, "threshold": float(options.min_accept_rate),
            "passed": bool(amin >= options.min_accept_rate),
            "worst": f"run {int(c)}, stage {int(s)}",
        }
    lml = np.asarray(stats["log_marginal_likelihood"], dtype=float)
    if lml.size >= 2:
        spread = float(np.max(lml) - np.min(lml)) if np.all(np.isfinite(lml)) else float("inf")
        out["smc_log_ml_spread"] = {
            "value": spread, "threshold": float(options.max_log_ml_spread),
            "passed": bool(spread <= options.max_log_ml_spread),
            "worst": f"runs {int(np.argmin(lml))} and {int(np.argmax(lml))}",
        }
    return out


def smc_summary(stats: xr.Dataset) -> dict[str, Any]:
    """A JSON-able summary of what SMC did (stored in ``TwinResult.info["smc"]``)."""
    n = np.asarray(stats["n_stages"], dtype=int)
    steps = np.asarray(stats["stage_mcmc_steps"], dtype=float) if "stage_mcmc_steps" in stats else None
    out = {
        "n_stages": n.tolist(),
        "log_marginal_likelihood": [float(v) for v in np.asarray(stats["log_marginal_likelihood"])],
        "min_stage_accept_rate": float(np.nanmin(np.asarray(stats["stage_accept_rate"], dtype=float))),
        "min_stage_ess": float(np.nanmin(np.asarray(stats["stage_ess"], dtype=float))) if "stage_ess" in stats else None,
    }
    if steps is not None:
        out["mcmc_steps_per_run"] = [int(np.nansum(r)) for r in steps]
    return out
