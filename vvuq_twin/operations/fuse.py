"""fuse: combine twins of different units or data into one.

Two ways:

* :func:`fuse_hierarchical` - twins of different units (airframes, patients) become one
  hierarchical twin: their data are concatenated with unit labels and the hierarchical model is
  fitted jointly. Same seed -> exactly the joint fit.
* :func:`fuse_posteriors` - posteriors of the same global parameters from independent data sets
  are combined by the product of their Gaussian approximations divided by the shared prior
  K - 1 times (each posterior already contains the prior once), so the prior is not counted
  K times. The array maths is :func:`gaussian_fusion`.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
import xarray as xr

from .._rng import RNGLike
from ..inference.calibrate import calibrate
from ..inference.results import TwinResult
from ..twin.data import TwinData
from ..twin.declaration import Twin
from ..twin.priors import Normal
from ._common import OperationError, param_signature, require_result
from .lineage import ATTR_KEY, Lineage, attach_lineage

__all__ = ["fuse_data", "fuse_hierarchical", "fuse_posteriors", "gaussian_fusion"]


# ---------------------------------------------------------------------------- hierarchical
def fuse_data(datasets: Sequence[TwinData], units: Sequence[str] | None = None) -> TwinData:
    """Concatenate data sets of different units into one TwinData with unit labels.

    Parameters
    ----------
    datasets : sequence of TwinData
        One per unit (or already labelled).
    units : sequence of str, optional
        Label of each data set; required for data without unit labels. Observation labels
        become ``"<unit>/<obs>"`` (or ``"<k>/<obs>"`` for labelled data).
    """
    datasets = list(datasets)
    if len(datasets) < 2:
        raise OperationError(f"fuse: need at least two data sets, got {len(datasets)}.")
    for k, d in enumerate(datasets):
        if not isinstance(d, TwinData):
            raise OperationError(f"fuse: item {k} is {type(d).__name__}, expected TwinData.")
    cols = [list(d.input_names) for d in datasets]
    if any(c != cols[0] for c in cols):
        raise OperationError(
            f"fuse: the data sets have different inputs {cols}; fused units must share the input "
            "columns."
        )
    if units is not None:
        units = [str(u) for u in units]
        if len(units) != len(datasets):
            raise OperationError(f"fuse: {len(units)} unit labels for {len(datasets)} data sets.")
        if len(set(units)) != len(units):
            raise OperationError(f"fuse: unit labels must be unique, got {units}.")
    labels, obs = [], []
    for k, d in enumerate(datasets):
        if units is not None:
            if d.unit is not None and set(d.unit.tolist()) != {units[k]}:
                raise OperationError(
                    f"fuse: data set {k} is labelled {sorted(set(d.unit.tolist()))} but units[{k}] "
                    f"is {units[k]!r}."
                )
            labels.append(np.full(d.n, units[k]))
            tag = units[k]
        else:
            if d.unit is None:
                raise OperationError(
                    f"fuse: data set {k} has no unit labels; pass units=[...] (one label per data "
                    "set)."
                )
            labels.append(d.unit)
            tag = str(k)
        obs += [f"{tag}/{o}" for o in d.obs]
    seen = [set(lab.tolist()) for lab in labels]
    for i in range(len(seen)):
        for j in range(i + 1, len(seen)):
            if seen[i] & seen[j]:
                raise OperationError(
                    f"fuse: unit(s) {sorted(seen[i] & seen[j])} appear in data sets {i} and {j}; "
                    "each unit's data must come from one data set (else they are counted twice)."
                )
    has_sd = any(d.y_sd is not None for d in datasets)
    return TwinData(
        x=np.vstack([d.x for d in datasets]),
        y=np.concatenate([d.y for d in datasets]),
        unit=np.concatenate(labels),
        y_sd=np.concatenate([d.y_sd if d.y_sd is not None else np.zeros(d.n) for d in datasets]) if has_sd else None,
        input_names=cols[0],
        obs=obs,
        missing="mask" if any(d.missing == "mask" for d in datasets) else "raise",
    )


def _check_same_parameterisation(twins: Sequence[Twin], what: str) -> None:
    sig0 = param_signature(twins[0])
    for k, t in enumerate(twins[1:], start=1):
        sig = param_signature(t)
        if sig != sig0:
            raise OperationError(
                f"{what}: twin {k} ({t.name!r}) has parameters {t.parameter_names} with spec "
                f"{json.dumps(sig, default=str)}, but twin 0 ({twins[0].name!r}) has "
                f"{twins[0].parameter_names} with spec {json.dumps(sig0, default=str)}. Only twins "
                "with the same parameterisation (names, priors, links) can be fused."
            )
        if t.simulator.spec() != twins[0].simulator.spec():
            raise OperationError(
                f"{what}: twin {k} ({t.name!r}) has another simulator than twin 0 "
                f"({twins[0].name!r}); fused parameters would not mean the same thing."
            )


def fuse_hierarchical(
    items: Sequence[TwinResult | TwinData],
    *,
    twin: Twin | None = None,
    units: Sequence[str] | None = None,
    rng: RNGLike = None,
    **calibrate_kwargs: Any,
) -> TwinResult:
    """Fuse twins of different units into one hierarchical twin and fit it jointly.

    Parameters
    ----------
    items : sequence of TwinResult or TwinData
        The units' calibrated twins (their data are used) or their data.
    twin : Twin, optional
        The hierarchical twin to fit (it must have a hierarchy). Default: the twin of the first
        result, which must then be hierarchical. The twins of all results must share its
        parameterisation and simulator.
    units : sequence of str, optional
        Unit label of each item (needed for unlabelled data).
    rng : Generator, int or None
        Seed of the joint calibration.
    **calibrate_kwargs
        Passed to :func:`~vvuq_twin.calibrate` (draws, tune, chains, ...).

    Returns
    -------
    TwinResult
        The joint fit; ``info["lineage"]`` holds the lineage JSON and the ledger an
        ``operation/fuse_hierarchical`` record.
    """
    items = list(items)
    if len(items) < 2:
        raise OperationError(f"fuse_hierarchical: need at least two twins/data sets, got {len(items)}.")
    results = [it for it in items if isinstance(it, TwinResult)]
    for r in results:
        require_result(r, "fuse_hierarchical")
    twins = [r.twin for r in results]
    target = twin if twin is not None else (twins[0] if twins else None)
    if target is None:
        raise OperationError("fuse_hierarchical: pass twin=... (a hierarchical Twin) to fuse data sets.")
    if target.hierarchy is None:
        raise OperationError(
            f"fuse_hierarchical: twin {target.name!r} has no hierarchy; pass twin= a Twin with "
            "hierarchy=Hierarchy(...) and per-unit parameters to pool the units."
        )
    if twins:
        pooled = {p.name for p in target.parameters}
        for k, t in enumerate(twins):
            if set(t.parameter_names) != pooled or t.simulator.spec() != target.simulator.spec():
                raise OperationError(
                    f"fuse_hierarchical: twin {k} ({t.name!r}) has parameters {t.parameter_names} "
                    f"and simulator {t.simulator.spec().get('name', '?')!r}, but the fused twin "
                    f"{target.name!r} has {target.parameter_names} and "
                    f"{target.simulator.spec().get('name', '?')!r}: different parameterisations "
                    "cannot be fused."
                )
    datasets = [it.data if isinstance(it, TwinResult) else it for it in items]
    fused = fuse_data(datasets, units)
    res = calibrate(target, fused, rng=rng, **calibrate_kwargs)
    lin = Lineage()
    ins = [lin.add_result(it) if isinstance(it, TwinResult) else lin.add_data(it, f"data[{k}]")
           for k, it in enumerate(items)]
    ins.append(lin.add_twin(target))
    oid = lin.add_output("fuse_hierarchical", target.name, ins, data_hash=fused.hash,
                         units=list(fused.units))
    lin.add_edge(oid, lin.add_result(res, label=f"{target.name}(fused)"), "calibrate")
    res.info[ATTR_KEY] = lin.to_json()
    res.ledger.record("operation", "fuse_hierarchical", twin=target, data_hash=fused.hash,
                      result={"inputs": [n for n in ins]})
    return res


# ---------------------------------------------------------------------------- posteriors
def gaussian_fusion(
    means: np.ndarray, covs: np.ndarray, prior_mean: np.ndarray, prior_cov: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse K Gaussian posteriors that share one Gaussian prior.

    p(theta | D_1..D_K) ∝ prod_k p(theta | D_k) / p(theta)^(K-1), so the precision is
    ``sum_k P_k - (K-1) P_0`` and the precision-weighted mean ``sum_k P_k m_k - (K-1) P_0 m_0``.

    Parameters
    ----------
    means : ndarray (K, p)
    covs : ndarray (K, p, p)
    prior_mean : ndarray (p,)
    prior_cov : ndarray (p, p)

    Returns
    -------
    mean : ndarray (p,)
    cov : ndarray (p, p)
    """
    means = np.asarray(means, float)
    covs = np.asarray(covs, float)
    m0 = np.asarray(prior_mean, float)
    C0 = np.asarray(prior_cov, float)
    K, p = means.shape
    if covs.shape != (K, p, p) or m0.shape != (p,) or C0.shape != (p, p):
        raise OperationError(
            f"gaussian_fusion: expected means (K, p), covs (K, p, p), prior_mean (p,), prior_cov "
            f"(p, p); got {means.shape}, {covs.shape}, {m0.shape}, {C0.shape}."
        )
    P0 = np.linalg.inv(C0)
    Pk = np.linalg.inv(covs)
    P = Pk.sum(axis=0) - (K - 1) * P0
    h = np.einsum("kij,kj->i", Pk, means) - (K - 1) * P0 @ m0
    eig = np.linalg.eigvalsh(0.5 * (P + P.T))
    if eig.min() <= 0:
        raise OperationError(
            "gaussian_fusion: the fused precision is not positive definite (smallest eigenvalue "
            f"{eig.min():.3g}): the posteriors are wider than the prior, so they are not Gaussian "
            "updates of this prior from independent data. Check the prior passed, or refit jointly."
        )
    cov = np.linalg.inv(P)
    return cov @ h, 0.5 * (cov + cov.T)


def fuse_posteriors(
    results: Sequence[TwinResult],
    *,
    parameters: Sequence[str] | None = None,
) -> xr.Dataset:
    """Fuse posteriors of the same global parameters from independent data sets.

    Each posterior is approximated by a Gaussian (draw mean and covariance); the shared prior
    (the twins' Normal priors) is divided out K - 1 times (:func:`gaussian_fusion`). Exact for
    conjugate linear-Gaussian twins, up to Monte Carlo error.

    Parameters
    ----------
    results : sequence of TwinResult
        Calibrations of twins with the same parameterisation on independent data.
    parameters : sequence of str, optional
        Global parameters to fuse (default all; each needs a Normal prior).

    Returns
    -------
    xarray.Dataset
        ``mean`` (param), ``cov`` (param, ``param_``), ``sd`` (param) of the fused posterior, and
        ``input_mean`` (source, param), ``input_sd`` (source, param); ``attrs["lineage"]``.
    """
    results = list(results)
    if len(results) < 2:
        raise OperationError(f"fuse_posteriors: need at least two results, got {len(results)}.")
    for r in results:
        require_result(r, "fuse_posteriors")
    twins = [r.twin for r in results]
    _check_same_parameterisation(twins, "fuse_posteriors")
    hashes = [r.data_hash for r in results]
    if len(set(hashes)) != len(hashes):
        raise OperationError(
            "fuse_posteriors: two results were calibrated on the same data (equal data hashes); "
            "fusing them would count those data twice. Fuse posteriors from independent data only."
        )
    by_name = {p.name: p for p in twins[0].parameters}
    names = list(parameters) if parameters is not None else list(by_name)
    for n in names:
        if n not in by_name:
            raise OperationError(f"fuse_posteriors: unknown parameter {n!r}; twin has {list(by_name)}.")
        p = by_name[n]
        if p.per_unit:
            raise OperationError(
                f"fuse_posteriors: {n!r} is per unit; fuse units with fuse_hierarchical instead."
            )
        if not isinstance(p.prior, Normal):
            raise OperationError(
                f"fuse_posteriors: {n!r} has a {type(p.prior).__name__} prior; Gaussian fusion "
                "divides out a Normal prior. Give it a Normal prior or refit the data jointly."
            )
    means, covs = [], []
    for r in results:
        s = np.column_stack([r.posterior[n].values.reshape(-1) for n in names])
        means.append(s.mean(axis=0))
        covs.append(np.atleast_2d(np.cov(s, rowvar=False)))
    m0 = np.array([by_name[n].prior.mu for n in names])
    C0 = np.diag([by_name[n].prior.sigma ** 2 for n in names])
    mean, cov = gaussian_fusion(np.array(means), np.array(covs), m0, C0)
    src = [f"{r.twin.name}:{r.data_hash[:12]}" for r in results]
    ds = xr.Dataset(
        {
            "mean": ("param", mean),
            "cov": (("param", "param_"), cov),
            "sd": ("param", np.sqrt(np.diag(cov))),
            "input_mean": (("source", "param"), np.array(means)),
            "input_sd": (("source", "param"), np.sqrt(np.array([np.diag(c) for c in covs]))),
            "prior_mean": ("param", m0),
            "prior_sd": ("param", np.sqrt(np.diag(C0))),
        },
        coords={"param": names, "param_": names, "source": src},
    )
    lin = Lineage()
    ins = [lin.add_result(r) for r in results]
    lin.add_output("fuse_posteriors", "+".join(names), ins, parameters=names)
    return attach_lineage(ds, lin)
