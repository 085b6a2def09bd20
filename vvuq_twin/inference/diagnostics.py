"""Sampler diagnostics computed after every calibration and surfaced loudly.

Thresholds (documented defaults, after Vehtari et al. 2021 and Betancourt 2017):

* split R-hat (rank-normalised) <= 1.01 for every posterior variable;
* bulk and tail ESS >= 100 per chain;
* zero divergent transitions after warm-up (NUTS);
* E-BFMI >= 0.3 in every chain (NUTS).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from ..exceptions import DiagnosticsWarning

__all__ = ["Thresholds", "Diagnostics", "compute_diagnostics"]


@dataclass(frozen=True)
class Thresholds:
    """Pass/fail thresholds for sampler diagnostics."""

    rhat_max: float = 1.01
    ess_per_chain_min: float = 100.0
    divergences_max: int = 0
    ebfmi_min: float = 0.3


@dataclass
class Diagnostics:
    """Diagnostics of one calibration.

    Attributes
    ----------
    table : xarray.Dataset
        Per-variable worst R-hat, minimum bulk/tail ESS (dim ``variable``).
    checks : dict
        Name -> {"value", "threshold", "passed"}.
    passed : bool
        All checks passed.
    """

    table: xr.Dataset
    checks: dict[str, dict[str, Any]]
    sampler: str
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def passed(self) -> bool:
        return all(c["passed"] for c in self.checks.values())

    @property
    def failures(self) -> list[str]:
        """Human-readable descriptions of the failed checks."""
        out = []
        for name, c in self.checks.items():
            if not c["passed"]:
                worst = f" (worst: {c['worst']})" if c.get("worst") else ""
                out.append(f"{name} = {c['value']:.4g} vs threshold {c['threshold']}{worst}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "sampler": self.sampler,
            "passed": self.passed,
            "checks": self.checks,
            "thresholds": asdict(self.thresholds),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=float)

    def __str__(self) -> str:
        lines = [f"Sampler diagnostics ({self.sampler}): {'PASS' if self.passed else 'FAIL'}"]
        for name, c in self.checks.items():
            mark = "ok  " if c["passed"] else "FAIL"
            lines.append(f"  [{mark}] {name:<16} {c['value']:>10.4g}  (threshold {c['threshold']})")
        return "\n".join(lines)

    def warn(self) -> None:
        """Emit a DiagnosticsWarning listing every failed check (no-op when all pass)."""
        if not self.passed:
            fix = ("more particles (draws) or runs (chains), a higher tempering threshold "
                   "(SMCOptions(threshold=0.7)), kernel='mh' for curved posteriors"
                   if self.sampler == "smc" else
                   "run longer (more draws/tune), reparameterise, raise target_accept")
            warnings.warn(
                "Sampler diagnostics FAILED: " + "; ".join(self.failures) + ". The posterior may "
                f"be unreliable: {fix}, or inspect the twin for non-identifiability.",
                DiagnosticsWarning,
                stacklevel=3,
            )


def _arviz_numba_cached() -> None:
    """Give ArviZ's numba-jitted variance (``rhat``/``ess`` use it when numba is installed)
    numba's on-disk cache.

    ArviZ declares it without ``cache=True``, so every process compiled it again at its first
    ``rhat`` (0.15-0.5 s of a warm README job). Cached, it is the same machine code: the same
    numbers. Only before its first compile (ArviZ compiles it lazily); anything unexpected in
    ArviZ's wrapper leaves it as it is.
    """
    try:
        from arviz.stats import stats_utils

        fn = stats_utils.stats_variance_1d
        kwargs = getattr(fn, "kwargs", None)
        if isinstance(kwargs, dict) and "numba_fn" not in vars(fn):
            kwargs.setdefault("cache", True)
    except Exception:  # noqa: BLE001 - an ArviZ without this wrapper: nothing to do
        pass


def compute_diagnostics(
    idata: az.InferenceData,
    *,
    sampler: str,
    thresholds: Thresholds | None = None,
    var_names: list[str] | None = None,
) -> Diagnostics:
    """Compute R-hat, ESS, divergences and E-BFMI of ``idata`` against ``thresholds``."""
    th = thresholds or Thresholds()
    post = idata.posterior
    if var_names is not None:
        post = post[var_names]
    nchain = post.sizes["chain"]
    _arviz_numba_cached()
    rhat = az.rhat(post)
    ess_b = az.ess(post, method="bulk")
    ess_t = az.ess(post, method="tail")
    names, r_w, eb_w, et_w = [], [], [], []
    for v in post.data_vars:
        names.append(v)
        r = np.asarray(rhat[v]).ravel()
        r_w.append(float(np.nanmax(r)) if r.size and not np.all(np.isnan(r)) else np.nan)
        eb_w.append(float(np.nanmin(np.asarray(ess_b[v]))))
        et_w.append(float(np.nanmin(np.asarray(ess_t[v]))))
    table = xr.Dataset(
        {
            "rhat_max": ("variable", np.array(r_w)),
            "ess_bulk_min": ("variable", np.array(eb_w)),
            "ess_tail_min": ("variable", np.array(et_w)),
        },
        coords={"variable": names},
    )
    checks: dict[str, dict[str, Any]] = {}

    def worst(arr, fn):
        if not len(names):
            return ""
        i = int(fn(arr))
        return names[i]

    r_arr = np.nan_to_num(np.array(r_w), nan=np.inf) if nchain > 1 else np.zeros(len(names))
    if nchain > 1:
        checks["rhat"] = {
            "value": float(np.max(r_arr)) if names else 1.0,
            "threshold": th.rhat_max,
            "passed": bool(np.all(r_arr <= th.rhat_max)),
            "worst": worst(r_arr, np.argmax),
        }
    ess_min = th.ess_per_chain_min * nchain
    checks["ess_bulk"] = {
        "value": float(np.min(eb_w)) if names else np.inf,
        "threshold": ess_min,
        "passed": bool(np.all(np.array(eb_w) >= ess_min)),
        "worst": worst(np.array(eb_w), np.argmin),
    }
    checks["ess_tail"] = {
        "value": float(np.min(et_w)) if names else np.inf,
        "threshold": ess_min,
        "passed": bool(np.all(np.array(et_w) >= ess_min)),
        "worst": worst(np.array(et_w), np.argmin),
    }
    stats = idata.get("sample_stats", None)
    if stats is not None and "diverging" in stats:
        ndiv = int(np.asarray(stats["diverging"]).sum())
        checks["divergences"] = {
            "value": float(ndiv),
            "threshold": th.divergences_max,
            "passed": ndiv <= th.divergences_max,
        }
    if stats is not None and "energy" in stats:
        bfmi = np.atleast_1d(az.bfmi(idata))
        checks["ebfmi"] = {
            "value": float(np.min(bfmi)),
            "threshold": th.ebfmi_min,
            "passed": bool(np.all(bfmi >= th.ebfmi_min)),
        }
    return Diagnostics(table=table, checks=checks, sampler=sampler, thresholds=th)
