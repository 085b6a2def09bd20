"""Inference verification: simulation-based calibration (SBC).

If parameters are drawn from the prior, data are simulated from them, and the posterior is
computed correctly, then the rank of the true value among (near-)independent posterior draws is
uniformly distributed (Talts, Betancourt, Simpson, Vehtari & Gelman 2018, "Validating Bayesian
inference algorithms with simulation-based calibration", arXiv:1804.06788). The same holds for
any function of the parameters *and the data*; the joint log-likelihood
``log p(y | theta)`` is the most useful one because it reacts to errors in the joint posterior that
marginal parameter ranks cannot see (Modrák, Moon, Kim, Bürkner, Huurre, Faltejsková, Gelman &
Vehtari 2023, "Simulation-based calibration checking for Bayesian computation: the choice of
test quantities shapes sensitivity", Bayesian Analysis).

Uniformity of the ranks is judged with the ECDF-difference plot and its *simultaneous*
confidence band (Säilynoja, Bürkner & Vehtari 2022, "Graphical test for discrete uniformity
and its applications in goodness-of-fit evaluation and multiple sample comparison", Statistics
and Computing 32:32), computed with ArviZ's implementation (optimisation or simulation
construction), plus a chi-square test on binned ranks.

Layers: :func:`rank_uniformity` (ranks in, test report out; NumPy/SciPy/ArviZ), :func:`sbc`
(generic engine: ``simulate`` and ``fit`` callables, replications through
:func:`vvuq_twin.ensembles.evaluate` on any executor), and :func:`sbc_twin` (adapter for a
vvuq_twin twin: prior predictive from ``twin.build_model``, fitting with
:func:`vvuq_twin.calibrate`).
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import arviz as az
import numpy as np
import xarray as xr
from arviz.stats.ecdf_utils import ecdf_confidence_band
from scipy import stats

from .._rng import RNGLike, as_generator, spawn_seeds
from ..ensembles import evaluate
from ._errors import SBCError, SBCWarning

__all__ = [
    "SBCResult",
    "sbc",
    "rank_uniformity",
    "ecdf_band",
]

Params = Mapping[str, Any]
SimulateFn = Callable[[np.random.Generator], "tuple[Params, Any]"]
FitFn = Callable[[Any, np.random.Generator], Any]
DerivedFn = Callable[[Params, Any], float]


# --------------------------------------------------------------------------------------------
# Layer 1: uniformity of ranks (NumPy / SciPy / ArviZ)
# --------------------------------------------------------------------------------------------


def _eval_indices(max_rank: int, n_points: int | None) -> np.ndarray:
    """Lattice indices i (1..max_rank) at which the rank ECDF is evaluated, z_i = i/(max_rank+1)."""
    all_i = np.arange(1, max_rank + 1)
    if n_points is None or n_points >= max_rank:
        return all_i
    idx = np.unique(np.round(np.linspace(1, max_rank, n_points)).astype(int))
    return idx


def ecdf_band(
    n_sims: int,
    max_rank: int,
    *,
    prob: float = 0.95,
    method: Literal["optimized", "simulated"] = "optimized",
    n_points: int | None = 100,
    num_trials: int = 1000,
    rng: RNGLike = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous confidence band for the ECDF of ``n_sims`` discrete-uniform ranks.

    Ranks ``r`` in ``0..max_rank`` are mapped to ``u = (r + 1) / (max_rank + 1)`` and the ECDF is
    evaluated on lattice points ``z_i = i / (max_rank + 1)`` where ``P(u <= z_i) = z_i`` exactly.
    The band has simultaneous coverage ``prob`` under uniformity (Säilynoja et al. 2022), by
    ArviZ's optimisation (``method="optimized"``, deterministic) or simulation construction.

    Returns
    -------
    z : ndarray
        Evaluation points.
    lower, upper : ndarray
        Band for the ECDF at ``z`` (subtract ``z`` for the ECDF-difference band).
    """
    if int(n_sims) != n_sims or n_sims < 2:
        raise ValueError(f"`n_sims` must be an integer >= 2, got {n_sims}.")
    if int(max_rank) != max_rank or max_rank < 1:
        raise ValueError(f"`max_rank` must be an integer >= 1, got {max_rank}.")
    if not 0 < prob < 1:
        raise ValueError(f"`prob` must lie in (0, 1), got {prob}.")
    z = _eval_indices(int(max_rank), n_points) / (max_rank + 1)
    if method == "optimized":
        lower, upper = ecdf_confidence_band(int(n_sims), z, z, prob=prob, method="optimized")
    elif method == "simulated":
        gen = as_generator(rng)
        L = int(max_rank)

        def rvs(n: int, random_state: np.random.Generator | None = None) -> np.ndarray:
            g = gen if random_state is None else random_state
            return (g.integers(0, L + 1, size=n) + 1.0) / (L + 1)

        lower, upper = ecdf_confidence_band(
            int(n_sims), z, z, prob=prob, method="simulated", rvs=rvs,
            num_trials=int(num_trials), random_state=gen,
        )
    else:
        raise ValueError(f"`method` must be 'optimized' or 'simulated', got {method!r}.")
    return z, np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)


def _chi2_bins(n_sims: int, max_rank: int, n_bins: int | None) -> list[np.ndarray]:
    L1 = max_rank + 1
    if n_bins is None:
        n_bins = max(2, min(L1, n_sims // 10, 20))
    n_bins = int(min(max(2, n_bins), L1))
    return np.array_split(np.arange(L1), n_bins)


def rank_uniformity(
    ranks: np.ndarray | xr.DataArray,
    max_rank: int,
    *,
    quantities: Sequence[str] | None = None,
    prob: float = 0.95,
    method: Literal["optimized", "simulated"] = "optimized",
    n_points: int | None = 100,
    n_bins: int | None = None,
    rng: RNGLike = None,
) -> xr.Dataset:
    """Test SBC ranks for discrete uniformity on ``0..max_rank``.

    Parameters
    ----------
    ranks : array_like or DataArray, shape (sim, quantity)
        Integer ranks. A DataArray must have dims ``sim`` and ``quantity``.
    max_rank : int
        Largest possible rank ``L`` (the number of posterior draws ranked against).
    quantities : sequence of str, optional
        Names of the columns (taken from the DataArray coordinate when given).
    prob : float
        Simultaneous coverage of the ECDF band; the chi-square test uses level ``1 - prob``.
    method : {"optimized", "simulated"}
        Band construction (Säilynoja et al. 2022).
    n_points : int, optional
        Number of lattice points at which the ECDF is checked (all when None).
    n_bins : int, optional
        Bins of the chi-square test (default: about ``n_sims/10``, at most 20).
    rng : Generator, int or None
        Only used by ``method="simulated"``.

    Returns
    -------
    xarray.Dataset
        ``ecdf_diff`` (quantity, point), ``band_lower``/``band_upper`` (point; as differences),
        ``band_violations``, ``max_abs_ecdf_diff``, ``band_passed``, ``chi2``, ``chi2_pvalue``,
        ``chi2_passed`` (quantity). ``band_passed`` is the primary verdict.
    """
    if isinstance(ranks, xr.DataArray):
        missing = {"sim", "quantity"} - set(ranks.dims)
        if missing:
            raise ValueError(f"`ranks` needs dims ('sim', 'quantity'); missing {sorted(missing)}.")
        quantities = [str(q) for q in ranks["quantity"].values]
        R = np.asarray(ranks.transpose("sim", "quantity").values)
    else:
        R = np.asarray(ranks)
        if R.ndim == 1:
            R = R[:, None]
        if R.ndim != 2:
            raise ValueError(f"`ranks` must have shape (sim, quantity), got {R.shape}.")
    if quantities is None:
        quantities = [f"q{j}" for j in range(R.shape[1])]
    if len(quantities) != R.shape[1]:
        raise ValueError(f"{len(quantities)} quantity names for {R.shape[1]} columns of ranks.")
    if not np.all(np.isfinite(R)) or np.any(R != np.round(R)) or R.min() < 0 or R.max() > max_rank:
        raise ValueError(
            f"`ranks` must be integers in 0..max_rank={max_rank}; got values in [{np.nanmin(R)}, "
            f"{np.nanmax(R)}]."
        )
    R = R.astype(int)
    n = R.shape[0]
    z, lo, hi = ecdf_band(n, max_rank, prob=prob, method=method, n_points=n_points, rng=rng)
    idx = np.round(z * (max_rank + 1)).astype(int)
    # ECDF of u = (r+1)/(L+1) at z_i = i/(L+1): fraction of ranks < i
    ecdf = (R[:, :, None] < idx[None, None, :]).mean(axis=0)  # (quantity, point)
    eps = 1e-12
    outside = (ecdf < lo[None, :] - eps) | (ecdf > hi[None, :] + eps)
    bins = _chi2_bins(n, max_rank, n_bins)
    edges = np.array([b[0] for b in bins] + [max_rank + 1])
    expected = np.array([len(b) for b in bins], dtype=float) / (max_rank + 1) * n
    chi2 = np.empty(R.shape[1])
    pval = np.empty(R.shape[1])
    for j in range(R.shape[1]):
        counts, _ = np.histogram(R[:, j], bins=edges)
        res = stats.chisquare(counts, expected)
        chi2[j], pval[j] = res.statistic, res.pvalue
    q = list(quantities)
    ds = xr.Dataset(
        {
            "ecdf_diff": (("quantity", "point"), ecdf - z[None, :]),
            "band_lower": ("point", lo - z),
            "band_upper": ("point", hi - z),
            "band_violations": ("quantity", outside.sum(axis=1).astype(int)),
            "max_abs_ecdf_diff": ("quantity", np.abs(ecdf - z[None, :]).max(axis=1)),
            "band_passed": ("quantity", ~outside.any(axis=1)),
            "chi2": ("quantity", chi2),
            "chi2_pvalue": ("quantity", pval),
            "chi2_passed": ("quantity", pval > 1 - prob),
        },
        coords={"quantity": q, "point": z},
        attrs={
            "n_sims": n,
            "max_rank": int(max_rank),
            "prob": float(prob),
            "band_method": method,
            "chi2_bins": len(bins),
            "reference": "Säilynoja, Bürkner & Vehtari (2022) Stat. Comput. 32:32; Talts et al. (2018)",
        },
    )
    return ds


# --------------------------------------------------------------------------------------------
# Layer 2: the generic SBC engine
# --------------------------------------------------------------------------------------------


def _flat_names(name: str, shape: tuple[int, ...]) -> list[str]:
    if shape == ():
        return [name]
    return [f"{name}[{','.join(map(str, i))}]" for i in np.ndindex(*shape)]


def _as_draws(post: Any, names: Sequence[str], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Normalise a fit's output to {name: array (chain, draw, *shape)}."""
    if hasattr(post, "posterior") and isinstance(getattr(post, "posterior"), xr.Dataset):
        post = post.posterior
    out: dict[str, np.ndarray] = {}
    if isinstance(post, xr.Dataset):
        for nm in names:
            if nm not in post:
                raise SBCError(
                    f"The fit returned no draws of parameter {nm!r} (it has {sorted(map(str, post.data_vars))}). "
                    "Return posterior draws of every parameter that `simulate` draws."
                )
            da = post[nm]
            if "chain" not in da.dims or "draw" not in da.dims:
                raise SBCError(
                    f"Posterior draws of {nm!r} as an xarray object need dims 'chain' and 'draw'; got {da.dims}."
                )
            other = [d for d in da.dims if d not in ("chain", "draw")]
            out[nm] = np.asarray(da.transpose("chain", "draw", *other).values, dtype=float)
    elif isinstance(post, Mapping):
        for nm in names:
            if nm not in post:
                raise SBCError(
                    f"The fit returned no draws of parameter {nm!r} (keys: {sorted(map(str, post))}). "
                    "Return a dict {name: array of shape (n_draws, *param_shape)} for every parameter "
                    "that `simulate` draws."
                )
            arr = np.asarray(post[nm], dtype=float)
            out[nm] = arr[None, ...]
    else:
        raise SBCError(
            "`fit` must return a dict {name: draws of shape (n_draws, *shape)}, an xarray.Dataset "
            f"with dims (chain, draw, ...), or an InferenceData; got {type(post).__name__}."
        )
    for nm in names:
        want = shapes[nm]
        got = out[nm].shape[2:]
        if got != want:
            raise SBCError(
                f"Posterior draws of {nm!r} have shape {got} per draw but the simulated value has shape "
                f"{want}. Return draws with a leading draw axis: shape (n_draws, *{want})."
            )
        if not np.all(np.isfinite(out[nm])):
            raise SBCError(f"Posterior draws of {nm!r} contain NaN or inf.")
    return out


def _rank(draws: np.ndarray, true: float, rng: np.random.Generator) -> int:
    less = int(np.sum(draws < true))
    ties = int(np.sum(draws == true))
    return less + (int(rng.integers(0, ties + 1)) if ties else 0)


#: Sampler diagnostics a fit may return with its draws (``(draws, {"passed": bool, ...})``),
#: stored per replication as ``diag_<key>`` (``diag_passed``: 1, 0, or NaN when not reported).
_DIAG_KEYS = ("passed", "rhat", "ess_bulk", "ess_tail", "divergences")


def _fit_diagnostics(out: Any) -> Mapping[str, Any] | None:
    """The diagnostics of a fit that returned ``(draws, diagnostics)``; None when it returned draws only."""
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping)):
        return None
    diag = out[1]
    if "passed" not in diag:
        raise SBCError(
            "A fit that returns (draws, diagnostics) must give diagnostics['passed'] (bool): whether "
            f"its sampler diagnostics met their thresholds; got keys {sorted(map(str, diag))}."
        )
    return diag


@dataclass
class _Replication:
    """One SBC replication; picklable when its callables are (module-level functions)."""

    fit: FitFn
    param_names: list[str]
    rank_names: list[str]
    shapes: dict[str, tuple[int, ...]]
    derived: dict[str, DerivedFn]
    max_rank: int
    thin: Literal["ess"] | int | None
    simulate: SimulateFn | None = None
    simulations: Sequence[tuple[Params, Any]] | None = field(default=None, repr=False)

    def __call__(self, row: np.ndarray) -> np.ndarray:
        index, seed = int(row[0]), int(row[1])
        sim_ss, fit_ss, tie_ss = np.random.SeedSequence(seed).spawn(3)
        if self.simulations is not None:
            params, data = self.simulations[index]
        else:
            if self.simulate is None:
                raise SBCError("Internal: a replication needs `simulate` or pre-drawn `simulations`.")
            params, data = self.simulate(np.random.default_rng(sim_ss))
        params = {k: np.asarray(v, dtype=float) for k, v in params.items()}
        for nm in self.param_names:
            if nm not in params or params[nm].shape != self.shapes[nm]:
                raise SBCError(
                    f"`simulate` returned parameter {nm!r} with shape "
                    f"{params[nm].shape if nm in params else 'missing'}; expected {self.shapes[nm]} "
                    "as in the first simulation. Every simulation must return the same parameters."
                )
        out = self.fit(data, np.random.default_rng(fit_ss))
        diag = _fit_diagnostics(out)
        if diag is not None:
            out = out[0]
        draws = _as_draws(out, self.param_names, self.shapes)
        n_chain, n_draw = next(iter(draws.values())).shape[:2]
        total = n_chain * n_draw
        # thinning to near-independent draws
        if self.thin == "ess":
            ess_min = float("inf")
            for nm in self.rank_names:
                a = draws[nm].reshape(n_chain, n_draw, -1)
                for j in range(a.shape[2]):
                    col = a[:, :, j]
                    if np.ptp(col) == 0:
                        continue
                    e = float(az.ess(col, method="bulk"))
                    if np.isfinite(e):
                        ess_min = min(ess_min, e)
            ess_min = min(ess_min, float(total))
            k = max(1, int(math.ceil(total / max(ess_min, 1.0) - 1e-9)))
        else:
            ess_min = float("nan")
            k = 1 if self.thin is None else int(self.thin)
        kept = np.arange(0, n_draw, k)
        n_kept = n_chain * kept.size
        pool = [(c, d) for c in range(n_chain) for d in kept]
        if n_kept < self.max_rank:
            # not enough near-independent draws: fall back to evenly spaced unthinned draws
            pool = [(c, d) for c in range(n_chain) for d in range(n_draw)]
        if len(pool) < self.max_rank:
            raise SBCError(
                f"The fit returned {total} draws but SBC ranks against max_rank={self.max_rank} draws. "
                "Ask the fit for more draws or lower `max_rank`."
            )
        sel = np.round(np.linspace(0, len(pool) - 1, self.max_rank)).astype(int)
        chosen = [pool[i] for i in sel]
        tie_rng = np.random.default_rng(tie_ss)
        ranks, truths = [], []
        for nm in self.rank_names:
            flat_true = params[nm].reshape(-1)
            d = np.stack([draws[nm][c, i].reshape(-1) for c, i in chosen])  # (L, size)
            for j in range(flat_true.size):
                ranks.append(_rank(d[:, j], flat_true[j], tie_rng))
                truths.append(flat_true[j])
        for fn in self.derived.values():
            true_val = float(fn(params, data))
            vals = np.array(
                [float(fn({nm: draws[nm][c, i] for nm in self.param_names}, data)) for c, i in chosen]
            )
            if not np.isfinite(true_val) or not np.all(np.isfinite(vals)):
                raise SBCError("A derived quantity (e.g. the log-likelihood) returned NaN or inf.")
            ranks.append(_rank(vals, true_val, tie_rng))
            truths.append(true_val)
        if diag is None:
            dvals = [np.nan] * len(_DIAG_KEYS)
        else:
            dvals = [float(diag["passed"])] + [float(diag.get(key, np.nan)) for key in _DIAG_KEYS[1:]]
        return np.concatenate(
            [np.asarray(ranks, dtype=float), np.asarray(truths, dtype=float),
             [float(k), ess_min, float(total), float(n_kept >= self.max_rank)], dvals]
        )


@dataclass(frozen=True)
class SBCResult:
    """Result of simulation-based calibration.

    Attributes
    ----------
    ranks : xarray.Dataset
        ``rank`` and ``prior_value`` (sim, quantity); ``thin``, ``ess_min``, ``n_draws``,
        ``independent`` (whether ``max_rank`` near-independent draws were available),
        ``seed`` and the fit's own sampler diagnostics ``diag_passed`` (1/0), ``diag_rhat``,
        ``diag_ess_bulk``, ``diag_ess_tail``, ``diag_divergences`` (sim; NaN when the fit
        returned draws only); attr ``max_rank``.
    report : xarray.Dataset
        Output of :func:`rank_uniformity` for these ranks.
    passed : bool
        True when no quantity's ECDF leaves its simultaneous band. This is the rank verdict
        only: ranks of replications listed in :attr:`unconverged` come from posteriors whose
        sampler did not converge, and a gate should not accept them (the loop's ``SBC`` step
        refuses them, see its ``max_unconverged``).
    """

    ranks: xr.Dataset
    report: xr.Dataset
    passed: bool

    @property
    def unconverged(self) -> list[int]:
        """Replications whose fit reported failed sampler diagnostics (empty when none reported)."""
        if "diag_passed" not in self.ranks:
            return []
        ok = self.ranks["diag_passed"].values
        return [int(i) for i in np.flatnonzero(ok == 0)]

    @property
    def n_diagnosed(self) -> int:
        """Replications whose fit reported its sampler diagnostics."""
        if "diag_passed" not in self.ranks:
            return 0
        return int(np.sum(np.isfinite(self.ranks["diag_passed"].values)))

    @property
    def failed_quantities(self) -> list[str]:
        """Quantities whose rank ECDF leaves the simultaneous band."""
        bp = self.report["band_passed"].values
        return [str(q) for q, ok in zip(self.report["quantity"].values, bp) if not ok]

    def to_dataset(self) -> xr.Dataset:
        """Ranks and report in one Dataset (NetCDF-safe: booleans stored as int8)."""
        rep = self.report.copy()
        for v in ("band_passed", "chi2_passed"):
            rep[v] = rep[v].astype("int8")
        ds = xr.merge([self.ranks, rep], combine_attrs="drop_conflicts")
        ds.attrs["passed"] = int(self.passed)
        return ds

    def summary(self) -> str:
        """Human-readable table: one line per quantity."""
        rep = self.report
        lines = [
            f"SBC: {rep.attrs['n_sims']} simulations, ranks 0..{rep.attrs['max_rank']}, "
            f"{100 * rep.attrs['prob']:.0f}% simultaneous ECDF band ({rep.attrs['band_method']}) -> "
            f"{'PASS' if self.passed else 'FAIL'}",
        ]
        if self.n_diagnosed:
            bad = self.unconverged
            lines.append(
                f"sampler diagnostics failed in {len(bad)} of {self.n_diagnosed} replications"
                + (f" ({bad[:10]}{'...' if len(bad) > 10 else ''})" if bad else "")
            )
        lines.append(f"{'quantity':<20} {'band':>5} {'outside':>8} {'max|dECDF|':>11} {'chi2 p':>8}")
        for j, q in enumerate(rep["quantity"].values):
            lines.append(
                f"{str(q):<20} {'ok' if rep['band_passed'].values[j] else 'FAIL':>5} "
                f"{int(rep['band_violations'].values[j]):>8d} {rep['max_abs_ecdf_diff'].values[j]:>11.3f} "
                f"{rep['chi2_pvalue'].values[j]:>8.3g}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _run_sbc(
    replication: _Replication,
    quantities: list[str],
    n_sims: int,
    *,
    rng: RNGLike,
    executor: Executor | None,
    prob: float,
    band_method: Literal["optimized", "simulated"],
    n_points: int | None,
) -> SBCResult:
    gen = as_generator(rng)
    seeds = spawn_seeds(gen, n_sims)
    rows = np.column_stack([np.arange(n_sims, dtype=float), np.asarray(seeds, dtype=float)])
    res = evaluate(replication, rows, executor=executor, on_failure="record", allow_nonfinite=True)
    if res.failures:
        first = res.failures[0]
        raise SBCError(
            f"{len(res.failures)} of {n_sims} SBC replications failed (first: replication "
            f"{first.index}: {first.error}). SBC needs every replication: dropping failed fits biases "
            "the ranks. Fix the simulator/fit (or its priors) and run again."
        )
    out = res.outputs
    Q = len(quantities)
    ranks = out[:, :Q].astype(int)
    truths = out[:, Q : 2 * Q]
    thin, ess_min, n_draws, indep = out[:, 2 * Q], out[:, 2 * Q + 1], out[:, 2 * Q + 2], out[:, 2 * Q + 3]
    diag = out[:, 2 * Q + 4 : 2 * Q + 4 + len(_DIAG_KEYS)]
    n_dep = int(np.sum(indep == 0))
    if n_dep:
        warnings.warn(
            f"In {n_dep} of {n_sims} replications the fit gave fewer than max_rank="
            f"{replication.max_rank} near-independent draws (after thinning by ESS), so correlated "
            "draws were ranked; autocorrelation makes ranks look non-uniform. Ask the fit for more "
            "draws or lower `max_rank`.",
            SBCWarning,
            stacklevel=4,
        )
    n_bad = int(np.sum(diag[:, 0] == 0))
    if n_bad:
        warnings.warn(
            f"In {n_bad} of {n_sims} replications the fit's own sampler diagnostics failed (R-hat, "
            "ESS, divergences or E-BFMI beyond their thresholds): those ranks come from unconverged "
            "posteriors, so the rank test then checks the sampler's budget, not the inference. "
            "Give each replication the draws, tuning and sampler settings the real fit needs.",
            SBCWarning,
            stacklevel=4,
        )
    ds = xr.Dataset(
        {
            "rank": (("sim", "quantity"), ranks),
            "prior_value": (("sim", "quantity"), truths),
            "thin": ("sim", thin.astype(int)),
            "ess_min": ("sim", ess_min),
            "n_draws": ("sim", n_draws.astype(int)),
            "independent": ("sim", indep.astype("int8")),
            "seed": ("sim", np.asarray(seeds, dtype=np.int64)),
            **{f"diag_{key}": ("sim", diag[:, j]) for j, key in enumerate(_DIAG_KEYS)},
        },
        coords={"sim": np.arange(n_sims), "quantity": quantities},
        attrs={"max_rank": replication.max_rank},
    )
    ds["seed"].attrs["description"] = (
        "seed of each replication: SeedSequence(seed).spawn(3) -> simulate, fit, tie-breaking"
    )
    report = rank_uniformity(
        ds["rank"], replication.max_rank, prob=prob, method=band_method, n_points=n_points, rng=gen
    )
    return SBCResult(ranks=ds, report=report, passed=bool(report["band_passed"].all()))


def _check_common(n_sims: int, max_rank: int, thin: Any) -> None:
    if int(n_sims) != n_sims or n_sims < 2:
        raise ValueError(f"`n_sims` must be an integer >= 2, got {n_sims}. SBC typically needs 100-1000.")
    if int(max_rank) != max_rank or max_rank < 1:
        raise ValueError(f"`max_rank` must be an integer >= 1, got {max_rank}.")
    if not (thin is None or thin == "ess" or (isinstance(thin, (int, np.integer)) and thin >= 1)):
        raise ValueError(f"`thin` must be 'ess', a positive integer or None, got {thin!r}.")


def sbc(
    simulate: SimulateFn,
    fit: FitFn,
    n_sims: int,
    *,
    log_likelihood: DerivedFn | None = None,
    derived: Mapping[str, DerivedFn] | None = None,
    var_names: Sequence[str] | None = None,
    max_rank: int = 99,
    thin: Literal["ess"] | int | None = "ess",
    prob: float = 0.95,
    band_method: Literal["optimized", "simulated"] = "optimized",
    n_points: int | None = 100,
    rng: RNGLike = None,
    executor: Executor | None = None,
) -> SBCResult:
    """Simulation-based calibration of an inference procedure.

    Parameters
    ----------
    simulate : callable
        ``simulate(rng) -> (params, data)``: draws ``params`` (dict name -> scalar or array)
        from the prior and ``data`` (any object) from the model given them.
    fit : callable
        ``fit(data, rng) -> draws``: posterior draws as a dict ``{name: array (n_draws, *shape)}``,
        an ``xarray.Dataset`` with dims ``(chain, draw, ...)`` or an ``InferenceData``; or
        ``(draws, diagnostics)`` with ``diagnostics`` a dict holding ``"passed"`` (whether the
        sampler's diagnostics met their thresholds) and optionally ``"rhat"``, ``"ess_bulk"``,
        ``"ess_tail"``, ``"divergences"``: stored per replication and counted in
        :attr:`SBCResult.unconverged`.
    n_sims : int
        Number of replications (100-1000 is typical).
    log_likelihood : callable, optional
        ``log_likelihood(params, data) -> float``: the joint log-likelihood of the data. Ranked
        as the derived quantity ``"log_lik"`` (Modrák et al. 2023); strongly recommended.
    derived : mapping, optional
        More test quantities ``{name: f(params, data) -> float}``.
    var_names : sequence of str, optional
        Parameters to rank (default all). The fit must still return draws of every simulated
        parameter, because derived quantities see them all.
    max_rank : int
        Number ``L`` of posterior draws ranked against (ranks lie in ``0..L``).
    thin : "ess", int or None
        Thin draws by ``ceil(n_draws / min ESS)`` (default), by a fixed factor, or not at all.
    prob : float
        Simultaneous coverage of the ECDF band for each quantity. With ``Q`` quantities the
        chance that a correct procedure fails somewhere is up to ``Q (1 - prob)``.
    band_method : {"optimized", "simulated"}
        Band construction of Säilynoja et al. (2022).
    n_points : int, optional
        ECDF evaluation points.
    rng : Generator, int or None
        Seed; replication ``i`` gets its own child seed, so results do not depend on the executor.
    executor : concurrent.futures.Executor, optional
        Runs replications in parallel (e.g. ``ProcessPoolExecutor``, a Dask client's
        ``get_executor()``); callables must then be picklable. ``None`` runs serially.

    Returns
    -------
    SBCResult

    Raises
    ------
    SBCError
        When a replication fails, or the fit's output does not match the simulated parameters.
    """
    _check_common(n_sims, max_rank, thin)
    if not callable(simulate) or not callable(fit):
        raise TypeError("`simulate` and `fit` must be callables: simulate(rng) and fit(data, rng).")
    gen = as_generator(rng)
    probe_params, _ = simulate(np.random.default_rng(np.random.SeedSequence(0)))
    return _sbc_engine(
        probe_params, fit, n_sims, simulate=simulate, simulations=None, var_names=var_names,
        log_likelihood=log_likelihood, derived=derived, max_rank=max_rank, thin=thin, prob=prob,
        band_method=band_method, n_points=n_points, rng=gen, executor=executor,
    )


def _sbc_engine(
    probe_params: Params,
    fit: FitFn,
    n_sims: int,
    *,
    simulate: SimulateFn | None,
    simulations: Sequence[tuple[Params, Any]] | None,
    var_names: Sequence[str] | None,
    log_likelihood: DerivedFn | None,
    derived: Mapping[str, DerivedFn] | None,
    max_rank: int,
    thin: Any,
    prob: float,
    band_method: Literal["optimized", "simulated"],
    n_points: int | None,
    rng: np.random.Generator,
    executor: Executor | None,
) -> SBCResult:
    if not isinstance(probe_params, Mapping) or not probe_params:
        raise SBCError(
            "`simulate` must return (params, data) with params a non-empty dict {name: value}; got "
            f"{type(probe_params).__name__}."
        )
    names = sorted(str(k) for k in probe_params)
    shapes = {k: np.asarray(probe_params[k], dtype=float).shape for k in names}
    if var_names is None:
        rank_names = names
    else:
        rank_names = [str(v) for v in var_names]
        unknown = sorted(set(rank_names) - set(names))
        if unknown:
            raise ValueError(
                f"`var_names` {unknown} are not among the simulated parameters {names}."
            )
        if not rank_names:
            raise ValueError("`var_names` must name at least one parameter to rank.")
    der: dict[str, DerivedFn] = {}
    if log_likelihood is not None:
        der["log_lik"] = log_likelihood
    else:
        warnings.warn(
            "No `log_likelihood` given: SBC ranks only the parameters and misses errors in the joint "
            "posterior (Modrák et al. 2023). Pass log_likelihood=lambda params, data: ...",
            SBCWarning,
            stacklevel=3,
        )
    for k, f in (derived or {}).items():
        if k in der or k in rank_names:
            raise ValueError(f"Derived quantity name {k!r} clashes with a parameter or 'log_lik'.")
        if not callable(f):
            raise TypeError(f"Derived quantity {k!r} must be a callable f(params, data), got {type(f).__name__}.")
        der[str(k)] = f
    quantities = [q for nm in rank_names for q in _flat_names(nm, shapes[nm])] + list(der)
    rep = _Replication(
        fit=fit, param_names=names, rank_names=rank_names, shapes=shapes, derived=der, max_rank=int(max_rank), thin=thin,
        simulate=simulate, simulations=simulations,
    )
    return _run_sbc(
        rep, quantities, int(n_sims), rng=rng, executor=executor, prob=prob,
        band_method=band_method, n_points=n_points,
    )
