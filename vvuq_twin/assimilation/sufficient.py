"""Exact data reduction of past chunks by sufficient statistics.

Every move of the SMC update re-evaluates the likelihood of all data assimilated so far, so its
cost grows with the rows seen. Where the observation model admits it, the rows of a past chunk
are reduced, exactly, to one row per *group*:

* rows that share the predictive-mean structure - the same unit, the same input row ``x`` and
  the same known measurement sd ``y_sd`` (when the data carry one) - have the same true process
  ``zeta(theta)`` and the same noise sd ``s(theta)`` under any simulator and any per-row
  deterministic discrepancy (bias, HSGP basis): the twin's model built on one representative
  row per group gives them;
* for the row-separable observation distributions the group's log-likelihood depends on the
  data only through a few statistics (``n_g`` rows, centre ``c_g`` and within-group sum of
  squares ``W_g``, and a constant of the data):

  - ``Normal(mu, s)``: ``-n_g log s - n_g/2 log 2 pi - (W_g + n_g (c_g - mu)^2) / (2 s^2)`` with
    ``c_g``, ``W_g`` the mean and within sum of squares of ``y`` (this is the
    ``(n, sum y, sum y^2)`` form, written without the cancellation of ``S2 - 2 mu S1 + n mu^2``);
  - ``LogNormal(mu, s)``: the same on ``log y``, plus the constant ``-sum log y``;
  - ``Poisson(mu)``: ``S_g log mu - n_g mu`` with ``S_g = sum y``, plus ``-sum log y!``.

:func:`reduce_twin_chunk` groups the rows, builds the twin's model on the representative rows,
reads the distribution of ``y`` and its parameters (``mu``, ``sigma``) from the model graph and
forms the statistics; :func:`compile_reduced` compiles the reduced log-likelihood with its
gradient, vectorised over particles like the twin's full chunk functions
(:class:`~vvuq_twin.assimilation.twin_adapter.TwinLogDensity`); :func:`check_reduction` compares
it with the full chunk at a few particles before it is used; :func:`plan_reductions` does all
three for the past chunks of an update and says, per chunk, why a chunk is kept in full.

Not reducible (the chunk is evaluated in full, with the reason recorded): Student-t and other
likelihoods without a fixed-size statistic, a marginalised full GP discrepancy (``MvNormal``
over rows), an AR(1) noise model (rows coupled in order), latent values per observation, no
repeated rows, and a known per-row sd that differs within rows sharing unit and inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._rows import _n_rows

__all__ = [
    "NotReducible",
    "RowGroups",
    "SufficientChunk",
    "ChunkReduction",
    "ReductionPlan",
    "REDUCIBLE_DISTRIBUTIONS",
    "group_rows",
    "group_statistics",
    "reduce_twin_chunk",
    "compile_reduced",
    "merge_reduced",
    "check_merged",
    "check_reduction",
    "plan_reductions",
]

#: observation distributions with a reduction: PyTensor random-variable op class -> kind
def _reducible_ops() -> dict[type, str]:
    from pytensor.tensor.random.basic import LogNormalRV, NormalRV, PoissonRV

    return {NormalRV: "normal", LogNormalRV: "lognormal", PoissonRV: "poisson"}


REDUCIBLE_DISTRIBUTIONS: dict[type, str] = _reducible_ops()

#: relative tolerance of the run-time exactness check (value and gradient)
CHECK_RTOL = 1e-8


class NotReducible(ValueError):
    """A data chunk that has no exact sufficient-statistic reduction; ``str(err)`` says why."""


@dataclass(frozen=True, eq=False)
class RowGroups:
    """Rows of a data chunk grouped by their predictive-mean structure.

    Attributes
    ----------
    rows : ndarray of int
        Rows of the chunk that enter the likelihood (finite ``y``), in order.
    group : ndarray of int
        Group of each of ``rows`` (``0 .. n_groups - 1``, groups sorted by unit label, inputs
        and sd).
    first : ndarray of int
        Row of the chunk that represents each group (its first row).
    n_rows : int
        Rows of the chunk (including rows with missing ``y``).
    n_groups_without_sd : int
        Groups when the known sd ``y_sd`` is ignored (equals ``n_groups`` without ``y_sd``).
    """

    rows: np.ndarray
    group: np.ndarray
    first: np.ndarray
    n_rows: int
    n_groups_without_sd: int

    @property
    def n_groups(self) -> int:
        """Number of distinct groups."""
        return int(self.first.size)


def _group_ids(cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Group index and first row of each group of equal rows; groups in sorted order of their
    key (unit label, inputs, sd), so that chunks measured at the same set-points get the same
    representative rows in the same order (and share a compiled function)."""
    key = np.ascontiguousarray(np.column_stack(cols).astype(float))
    _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return np.asarray(inv).reshape(-1), first


def group_rows(data: Mapping[str, np.ndarray]) -> RowGroups:
    """Group the rows of a chunk that share unit, inputs ``x`` and known sd ``y_sd``.

    Rows with a missing (non-finite) ``y`` do not enter the likelihood and are left out.

    Parameters
    ----------
    data : dict of arrays
        A data chunk as :class:`~vvuq_twin.assimilation.TwinLogDensity` takes it: ``x``
        (n, p) or (n,), ``y`` (n,), optional ``unit`` (n,) and ``y_sd`` (n,).

    Returns
    -------
    RowGroups

    Raises
    ------
    NotReducible
        If the chunk has no ``x``/``y`` or no finite ``y``.
    """
    if "x" not in data or "y" not in data:
        raise NotReducible(f"the chunk has no 'x' and 'y' columns (has {sorted(data)}).")
    n = _n_rows(data)
    y = np.asarray(data["y"], float).reshape(-1)
    rows = np.flatnonzero(np.isfinite(y))
    if rows.size == 0:
        raise NotReducible("the chunk has no observed (finite) y.")
    x = np.asarray(data["x"], float).reshape(n, -1)[rows]
    cols = [x]
    if "unit" in data:
        _, ucode = np.unique(np.asarray(data["unit"]).astype(str)[rows], return_inverse=True)
        cols.insert(0, np.asarray(ucode, float).reshape(-1, 1))
    g_nosd, _ = _group_ids(cols)
    if "y_sd" in data and data["y_sd"] is not None:
        cols.append(np.asarray(data["y_sd"], float).reshape(-1)[rows].reshape(-1, 1))
    group, first_local = _group_ids(cols)
    return RowGroups(rows=rows, group=group, first=rows[first_local], n_rows=n,
                     n_groups_without_sd=int(g_nosd.max()) + 1)


def group_statistics(y: np.ndarray, groups: RowGroups, kind: str
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Sufficient statistics of each group for an observation distribution.

    Parameters
    ----------
    y : ndarray (n,)
        The chunk's observations (rows ``groups.rows`` are used).
    groups : RowGroups
    kind : {"normal", "lognormal", "poisson"}

    Returns
    -------
    (count, centre, within, constant)
        ``count`` (G,) rows per group; ``centre`` (G,) the group mean of ``y`` (normal,
        poisson) or of ``log y`` (lognormal); ``within`` (G,) the within-group sum of squares
        about the centre (0 for poisson); ``constant`` the data-only term (``-sum log y`` for
        lognormal, ``-sum log y!`` for poisson, 0 for normal).

    Raises
    ------
    NotReducible
        Observations outside the support (``y <= 0`` for lognormal, not a count for poisson):
        the full likelihood is ``-inf`` there and the chunk is evaluated in full.
    """
    from scipy.special import gammaln

    v = np.asarray(y, float).reshape(-1)[groups.rows]
    G = groups.n_groups
    constant = 0.0
    if kind == "lognormal":
        if np.any(v <= 0):
            raise NotReducible("LogNormal observations with y <= 0 (outside the support).")
        constant = -float(np.sum(np.log(v)))
        v = np.log(v)
    elif kind == "poisson":
        if np.any((v < 0) | (v != np.round(v))):
            raise NotReducible("Poisson observations that are not non-negative integers.")
        constant = -float(np.sum(gammaln(v + 1.0)))
    elif kind != "normal":
        raise ValueError(f"`kind` must be 'normal', 'lognormal' or 'poisson', got {kind!r}.")
    count = np.bincount(groups.group, minlength=G).astype(float)
    centre = np.bincount(groups.group, weights=v, minlength=G) / count
    if kind == "poisson":
        within = np.zeros(G)
    else:
        within = np.bincount(groups.group, weights=(v - centre[groups.group]) ** 2, minlength=G)
    return count, centre, within, constant


@dataclass(eq=False)
class SufficientChunk:
    """A past data chunk reduced to one row per group, with its sufficient statistics.

    Attributes
    ----------
    kind : str
        Observation distribution: ``"normal"``, ``"lognormal"`` or ``"poisson"``.
    representative : dict of arrays
        One row per group (the group's first row) in the chunk's format.
    count, centre, within : ndarray (G,)
        Statistics of each group (see :func:`group_statistics`).
    constant : float
        Data-only term of the log-likelihood.
    n_rows : int
        Rows of the full chunk.
    full : dict of arrays
        The full chunk (for the exactness check).
    key : str
        Cache key of the full chunk.
    verified : bool
        Whether :func:`check_reduction` has passed.
    """

    kind: str
    representative: dict[str, np.ndarray]
    count: np.ndarray
    centre: np.ndarray
    within: np.ndarray
    constant: float
    n_rows: int
    full: Mapping[str, np.ndarray]
    key: str
    verified: bool = False
    max_error: float = float("nan")
    #: why the exactness check failed ("" when it passed or has not run)
    failure: str = ""
    #: identifies the compiled function: distribution, twin and representative rows (not y)
    struct_key: str = ""
    #: identifies the twin the representative model is built from (chunks sharing it merge)
    twin_key: str = ""
    _twin: Any = field(default=None, repr=False)
    _model: Any = field(default=None, repr=False)
    _fn: Callable | None = field(default=None, repr=False)

    @property
    def n_groups(self) -> int:
        """Rows of the reduced chunk (distinct groups)."""
        return int(self.count.size)


def _distribution(model: Any) -> tuple[str, list]:
    """The reducible kind of the model's observed ``y`` and its parameters (value-variable form)."""
    y_rv = model["y"]
    op = y_rv.owner.op
    from pymc.distributions.multivariate import MvNormalRV as PymcMvNormalRV
    from pytensor.tensor.random.basic import MvNormalRV

    if isinstance(op, (MvNormalRV, PymcMvNormalRV)):
        raise NotReducible(
            "the observations are jointly Gaussian over rows (MvNormal: a marginalised GP "
            "discrepancy couples the rows), so the likelihood is not row-separable.")
    kind = next((k for cls, k in REDUCIBLE_DISTRIBUTIONS.items() if isinstance(op, cls)), None)
    if kind is None:
        label = getattr(op, "name", None) or str(op)
        raise NotReducible(
            f"the observation distribution {label!r} ({type(op).__name__}) has no fixed-size sufficient "
            "statistic (only Normal, LogNormal and Poisson rows are reduced).")
    params = list(op.dist_params(y_rv.owner))
    return kind, model.replace_rvs_by_values(params)


def reduce_twin_chunk(density: Any, data: Mapping[str, np.ndarray]) -> SufficientChunk:
    """Group a chunk's rows and form the sufficient statistics for the twin's observation model.

    The twin's model is built on one representative row per group (the twin's discrepancy
    geometry frozen and an ``"auto"`` parametrisation resolved on the *full* chunk, as the full
    chunk's model has them); its observed ``y`` must be Normal, LogNormal or Poisson.

    Parameters
    ----------
    density : TwinLogDensity
        Prepared (:meth:`~vvuq_twin.assimilation.TwinLogDensity.prepare`).
    data : dict of arrays
        The chunk.

    Returns
    -------
    SufficientChunk
        Not yet compiled nor verified.

    Raises
    ------
    NotReducible
        With the reason (see the module docstring).
    """
    groups = group_rows(data)
    n_used = int(groups.rows.size)
    if groups.n_groups == n_used:
        if groups.n_groups_without_sd < n_used:
            raise NotReducible(
                f"the known per-row sd y_sd differs within rows that share unit and inputs "
                f"({n_used} rows would form {groups.n_groups_without_sd} groups without y_sd, but "
                f"{groups.n_groups} with it): no rows can be merged exactly.")
        raise NotReducible(f"no repeated rows: each of the {n_used} rows has its own unit and "
                           "inputs, so the reduction would not save any evaluation.")
    full_td = density.twin_data(data)
    twin = density.twin
    if getattr(twin, "has_auto_parametrization", False):
        twin = twin.with_parametrization(full_td)
    twin = twin.with_frozen_discrepancy(full_td)
    # the twin as the density has it (the usual case: frozen geometry, fixed parametrisation),
    # or one resolved on this chunk's data, which only this chunk's reduction uses
    twin_key = "twin" if twin is density.twin else "chunk:" + density._key(data)
    rep = {k: np.asarray(v)[groups.first] for k, v in data.items()}
    model = twin.build_model(density.twin_data(rep), check=False)
    kind, _ = _distribution(model)
    names = [rv.name for rv in model.free_RVs]
    if density.free_names is not None and names != list(density.free_names):
        raise NotReducible(
            f"the model on the representative rows has free variables {names}, not "
            f"{list(density.free_names)} (latent values per observation?).")
    if density.free_shapes:
        shapes = {rv.name: tuple(int(v) for v in rv.shape.eval()) for rv in model.free_RVs}
        if any(shapes[k] != tuple(density.free_shapes[k]) for k in shapes):
            raise NotReducible(
                f"the model on the representative rows has free-variable shapes {shapes}, not "
                f"{dict(density.free_shapes)} (a hierarchical twin without its units fixed?).")
    count, centre, within, constant = group_statistics(np.asarray(data["y"], float), groups, kind)
    return SufficientChunk(kind=kind, representative=rep, count=count, centre=centre, within=within,
                           constant=constant, n_rows=groups.n_rows, full=data, key=density._key(data),
                           struct_key=_struct_key(density, kind, twin_key, rep), twin_key=twin_key,
                           _twin=twin, _model=model)


def _struct_key(density: Any, kind: str, twin_key: str, rep: Mapping[str, np.ndarray]) -> str:
    return f"{kind}|{twin_key}|" + density._key({k: v for k, v in rep.items() if k != "y"})


def merge_reduced(density: Any, parts: Sequence[SufficientChunk]) -> SufficientChunk:
    """Pool reduced chunks of the same distribution and twin into one reduction.

    The log-likelihood is additive over chunks, and the statistics of a group pool exactly:
    ``n = sum n_m``, ``c = sum n_m c_m / n``, ``W = sum W_m + sum n_m (c_m - c)^2``, the
    constants add. Groups of different chunks with the same unit, inputs and known sd become
    one, so a stream that measures the same set-points again and again keeps a past of constant
    size. The result has no ``full`` chunk (check it against the parts with
    :func:`check_merged`).

    Raises
    ------
    ValueError
        If the parts differ in distribution or twin.
    """
    if len({(p.kind, p.twin_key) for p in parts}) != 1:
        raise ValueError("Only reduced chunks of the same distribution and twin can be merged.")
    keys = list(parts[0].representative)
    cat = {k: np.concatenate([np.asarray(p.representative[k]) for p in parts], axis=0) for k in keys}
    groups = group_rows(dict(cat, y=np.zeros(cat["y"].shape[0])))
    g, G = groups.group, groups.n_groups
    cnt = np.concatenate([p.count for p in parts])
    cen = np.concatenate([p.centre for p in parts])
    wit = np.concatenate([p.within for p in parts])
    n = np.bincount(g, weights=cnt, minlength=G)
    c = np.bincount(g, weights=cnt * cen, minlength=G) / n
    w = np.bincount(g, weights=wit + cnt * (cen - c[g]) ** 2, minlength=G)
    if parts[0].kind == "poisson":
        w = np.zeros(G)
    rep = {k: v[groups.first] for k, v in cat.items()}
    first = parts[0]
    return SufficientChunk(kind=first.kind, representative=rep, count=n, centre=c, within=w,
                           constant=float(sum(p.constant for p in parts)),
                           n_rows=int(sum(p.n_rows for p in parts)), full={},
                           key="merged:" + "|".join(p.key for p in parts),
                           struct_key=_struct_key(density, first.kind, first.twin_key, rep),
                           twin_key=first.twin_key, _twin=first._twin)


def check_merged(model: Any, merged: SufficientChunk, parts: Sequence[SufficientChunk], z: np.ndarray,
                 rtol: float = CHECK_RTOL) -> float:
    """Compare a merged reduction with the sum of its (verified) parts at ``z``, value and
    gradient, as :func:`check_reduction` does with a full chunk; sets ``merged.verified``."""
    z = np.atleast_2d(np.asarray(z, float))
    with np.errstate(all="ignore"):
        v_m, g_m = model.log_likelihood_reduced_z(z, merged, True)
        v_p, g_p = np.zeros(z.shape[0]), np.zeros_like(z)
        for p in parts:
            v, gg = model.log_likelihood_reduced_z(z, p, True)
            v_p, g_p = v_p + v, g_p + gg
    ok = np.isfinite(v_p)
    if not ok.any() or not np.array_equal(np.isfinite(v_m), ok):
        raise NotReducible("the merged reduction is not finite where its parts are.")
    err_v = np.abs(v_m[ok] - v_p[ok]) / np.maximum(1.0, np.abs(v_p[ok]))
    err_g = np.abs(g_m[ok] - g_p[ok]) / np.maximum(1.0, np.max(np.abs(g_p[ok]), axis=1, keepdims=True))
    err = float(max(err_v.max(), err_g.max()))
    merged.max_error = err
    if not err <= rtol:
        raise NotReducible(f"the merged reduction differs from the sum of its parts (relative error "
                           f"{err:.3g} > rtol {rtol:g}).")
    merged.verified = True
    return err


def _reduced_logp(kind: str, params: list, n, c, W):
    """Sum over groups of the reduced log-likelihood without its data constant (PyTensor; the
    statistics ``n``, ``c``, ``W`` are symbolic vectors), with PyMC's parameter checks."""
    import pytensor.tensor as pt
    from pymc.distributions.dist_math import check_parameters, logpow

    if kind == "poisson":
        (mu,) = params
        res = logpow(mu, n * c) - n * mu
        return check_parameters(res.sum(), pt.all(pt.ge(mu, 0)), msg="mu >= 0")
    mu, s = params
    res = -n * pt.log(s) - 0.5 * n * np.log(2.0 * np.pi) - (W + n * (c - mu) ** 2) / (2.0 * s**2)
    return check_parameters(res.sum(), pt.all(pt.gt(s, 0)), msg="sigma > 0")


def _strip_views(out):
    """``out`` without the view ops that name the model's Deterministics: PyTensor has no
    vectorised form of them, and ``vectorize_graph`` would otherwise loop over the particles in
    Python (``Blockwise{ViewOp}``)."""
    from pytensor.compile.ops import ViewOp
    from pytensor.graph.traversal import applys_between, graph_inputs
    from pytensor.graph.replace import clone_replace

    for _ in range(100):
        views = {node.outputs[0]: node.inputs[0]
                 for node in applys_between(list(graph_inputs([out])), [out]) if isinstance(node.op, ViewOp)}
        if not views:
            return out
        out = clone_replace(out, replace=views)
    return out


def compile_reduced(density: Any, reduced: SufficientChunk) -> Callable:
    """The compiled reduced log-likelihood (without its data constant) and gradient.

    The statistics are inputs: one function serves every reduction with the same distribution,
    twin and representative rows (cached in the density by ``struct_key``), so chunks measured
    at the same set-points compile once. The graph is vectorised over a leading particle axis
    like the twin's full chunk functions; the function takes the split value-variable
    coordinates, then ``count``, ``centre``, ``within``, and returns ``[value (n,), *gradients]``.
    """
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.replace import vectorize_graph

    if reduced._fn is not None:
        return reduced._fn
    key = ("suffn", reduced.struct_key)
    fn = density._cache.get(key)
    if fn is None:
        model = reduced._model
        if model is None:
            model = reduced._twin.build_model(density.twin_data(reduced.representative), check=False)
        _, vv, batched = density._batched_values(model)
        vnames = [v.name for v in vv]
        if density.value_names and vnames != list(density.value_names):
            raise NotReducible(f"the representative model's value variables {vnames} differ from "
                               f"{list(density.value_names)}.")
        kind, params = _distribution(model)
        stats = [pt.vector(name=k, dtype="float64") for k in ("count", "centre", "within")]
        out = _reduced_logp(kind, params, *stats)
        out_b = vectorize_graph(_strip_views(out), replace=batched)
        ins = [batched[v] for v in vv]
        grads = pt.grad(out_b.sum(), ins, disconnected_inputs="ignore")
        fn = pytensor.function(ins + stats, [out_b, *grads], on_unused_input="ignore")
        density._cache[key] = fn
        density.n_compiled += 1
    reduced._fn = fn
    reduced._model = None  # compiled; drop the model graph
    return fn


def check_reduction(model: Any, reduced: SufficientChunk, z: np.ndarray,
                    rtol: float = CHECK_RTOL) -> float:
    """Compare the reduced and the full chunk's log-likelihood (value and gradient) at ``z``.

    Parameters
    ----------
    model : TwinLogDensity
    reduced : SufficientChunk
    z : ndarray (k, d)
        A few particles (value-variable coordinates).
    rtol : float
        Relative tolerance: ``|reduced - full| <= rtol * max(1, |full|)`` for the value, and
        ``rtol * max(1, max |full gradient|)`` for each gradient row.

    Returns
    -------
    float
        The largest relative error; ``reduced.verified`` is set when it passes.

    Raises
    ------
    NotReducible
        When the values or gradients differ, or no check particle has a finite likelihood.
    """
    z = np.atleast_2d(np.asarray(z, float))
    with np.errstate(all="ignore"):
        v_full, g_full = model.log_likelihood_z(z, reduced.full, True)
        v_red, g_red = model.log_likelihood_reduced_z(z, reduced, True)
    ok = np.isfinite(v_full)
    if not ok.any():
        raise NotReducible("the full log-likelihood is not finite at any check particle, so the "
                           "reduction could not be verified.")
    if not np.array_equal(np.isfinite(v_red), ok):
        raise NotReducible("the reduced log-likelihood is finite at different check particles than "
                           "the full one.")
    err_v = np.abs(v_red[ok] - v_full[ok]) / np.maximum(1.0, np.abs(v_full[ok]))
    scale_g = np.maximum(1.0, np.max(np.abs(g_full[ok]), axis=1, keepdims=True))
    err_g = np.abs(g_red[ok] - g_full[ok]) / scale_g
    err = float(max(err_v.max(), err_g.max() if err_g.size else 0.0))
    reduced.max_error = err
    if not err <= rtol:
        reduced.failure = (
            f"the reduced log-likelihood differs from the full one at the check particles "
            f"(largest relative error {err:.3g} > rtol {rtol:g}; value {err_v.max():.3g}, gradient "
            f"{err_g.max() if err_g.size else 0.0:.3g}): the rows sharing unit and inputs do not "
            "share their predictive mean (a simulator or discrepancy that depends on other rows?).")
        raise NotReducible(reduced.failure)
    reduced.verified = True
    return err


@dataclass
class ChunkReduction:
    """Whether one past chunk is evaluated reduced, and why (not)."""

    used: bool
    n_rows: int
    n_rows_reduced: int
    reason: str
    kind: str = ""
    max_error: float = float("nan")


@dataclass
class ReductionPlan:
    """The sufficient-statistic reduction of an update's past chunks.

    Attributes
    ----------
    reduced : list of SufficientChunk or None
        One per past chunk: its verified reduction, or None (evaluated in full).
    chunks : list of ChunkReduction
        Per chunk: used, rows before / after (on its own), reason.
    terms : list of (str, object)
        What an evaluation of the past sums: ``("full", chunk)`` for the chunks kept in full and
        ``("reduced", SufficientChunk)`` for the reductions - the verified reductions of chunks
        sharing distribution and twin pooled into one (:func:`merge_reduced`) where that check
        passed.
    mode : True, False or "auto"
    merge_reason : str
        How the reductions were pooled (or why not).
    """

    reduced: list[SufficientChunk | None]
    chunks: list[ChunkReduction]
    terms: list[tuple[str, Any]] = field(default_factory=list)
    mode: bool | str = False
    merge_reason: str = ""

    @property
    def used(self) -> bool:
        """Whether any past chunk is evaluated reduced."""
        return any(r is not None for r in self.reduced)

    @property
    def n_rows(self) -> int:
        """Past rows before the reduction."""
        return int(sum(c.n_rows for c in self.chunks))

    @property
    def n_rows_reduced(self) -> int:
        """Past rows evaluated after the reduction (rows of the full chunks, groups of the
        reduced terms)."""
        return int(sum(_n_rows(obj) if kind == "full" else obj.n_groups for kind, obj in self.terms))

    @property
    def reason(self) -> str:
        """One line per chunk (``chunk i: ...``), and how the reductions were pooled."""
        if self.mode is False:
            return "not requested (sufficient_statistics=False)"
        if not self.chunks:
            return "no past chunks"
        out = "; ".join(f"chunk {i}: {c.reason}" for i, c in enumerate(self.chunks))
        return out + (f"; {self.merge_reason}" if self.merge_reason else "")


def _min_gain_reason(mode: Any, n_rows: int, n_groups: int) -> str | None:
    if mode == "auto" and n_groups > n_rows / 2:
        return (f"only {n_rows - n_groups} of {n_rows} rows would be merged ({n_groups} groups); "
                "'auto' reduces a chunk when that at least halves its rows (the reduced "
                "function costs a compile and a check).")
    return None


def plan_reductions(model: Any, past: Sequence[Mapping[str, np.ndarray]], mode: bool | str,
                    check_z: np.ndarray | None, *, merge: bool = True) -> ReductionPlan:
    """Reduce each past chunk where that is exact (and, with ``"auto"``, worthwhile).

    Parameters
    ----------
    model : ParticleModel
        A model offering ``reduce_chunk`` and ``log_likelihood_reduced_z`` (a twin's
        :class:`~vvuq_twin.assimilation.TwinLogDensity`); others are evaluated in full.
    past : sequence of dict
        The past chunks.
    mode : True, False or "auto"
        ``False``: no reduction. ``True``: reduce every chunk that admits an exact reduction.
        ``"auto"``: the same, for chunks whose rows at least halve. A chunk that is not reduced
        is evaluated in full and its reason recorded.
    check_z : ndarray (k, d), optional
        Particles at which each new reduction is checked against the full chunk (a reduction
        verified before is reused as is). Without them a chunk is not reduced.
    merge : bool
        Pool the verified reductions of chunks that share distribution and twin into one
        (:func:`merge_reduced`, checked at ``check_z`` against the sum of its parts), so that the
        past evaluates one function over the distinct groups of all chunks.

    Returns
    -------
    ReductionPlan

    Raises
    ------
    ValueError
        For a ``mode`` other than True, False, "auto".
    """
    if mode not in (True, False, "auto"):
        raise ValueError(f"`sufficient_statistics` must be True, False or 'auto', got {mode!r}.")
    reduced: list[SufficientChunk | None] = []
    info: list[ChunkReduction] = []
    for chunk in past:
        n = _n_rows(chunk)
        if mode is False:
            reduced.append(None)
            info.append(ChunkReduction(False, n, n, "sufficient_statistics=False"))
            continue
        if not hasattr(model, "reduce_chunk") or not hasattr(model, "log_likelihood_reduced_z"):
            reduced.append(None)
            info.append(ChunkReduction(False, n, n, f"the model ({type(model).__name__}) offers no "
                                       "sufficient-statistic reduction (a twin's TwinLogDensity does)"))
            continue
        try:
            red = model.reduce_chunk(chunk)
            why = _min_gain_reason(mode, red.n_rows, red.n_groups)
            if why is not None:
                raise NotReducible(why)
            if red.failure:
                raise NotReducible(red.failure)
            if not red.verified:
                if check_z is None or np.asarray(check_z).shape[0] == 0:
                    raise NotReducible("no check particles to verify the reduction against the full chunk.")
                check_reduction(model, red, check_z)
        except NotReducible as err:
            reduced.append(None)
            info.append(ChunkReduction(False, n, n, f"not reduced: {err}"))
            continue
        reduced.append(red)
        info.append(ChunkReduction(True, n, red.n_groups,
                                   f"reduced {red.n_rows} rows to {red.n_groups} groups ({red.kind}; "
                                   f"checked, relative error {red.max_error:.2g})",
                                   kind=red.kind, max_error=red.max_error))
    terms: list[tuple[str, Any]] = [("full", c) for c, r in zip(past, reduced) if r is None]
    merge_reason = ""
    families: dict[tuple[str, str], list[SufficientChunk]] = {}
    for r in reduced:
        if r is not None:
            families.setdefault((r.kind, r.twin_key), []).append(r)
    for parts in families.values():
        if not merge or len(parts) < 2 or check_z is None or np.asarray(check_z).shape[0] == 0:
            terms += [("reduced", p) for p in parts]
            continue
        try:
            cache = getattr(model, "_cache", None)
            mkey = ("suffmerged", "|".join(p.key for p in parts))
            merged = cache.get(mkey) if cache is not None else None
            if merged is None:
                merged = merge_reduced(model, parts)
                check_merged(model, merged, parts, check_z)
                if cache is not None:
                    cache[mkey] = merged
            terms.append(("reduced", merged))
            merge_reason = (f"{len(parts)} reduced chunks ({sum(p.n_groups for p in parts)} groups) "
                            f"pooled into {merged.n_groups} groups (checked, relative error "
                            f"{merged.max_error:.2g})")
        except NotReducible as err:
            terms += [("reduced", p) for p in parts]
            merge_reason = f"reduced chunks not pooled: {err}"
    return ReductionPlan(reduced, info, terms, mode, merge_reason)
