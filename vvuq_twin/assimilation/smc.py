"""Sequential Monte Carlo update of a static-parameter posterior given a new batch of data.

The posterior after the batches seen so far is held as weighted particles
(:class:`ParticlePosterior`) together with each particle's cumulative log-likelihood of all data
assimilated so far. :func:`smc_update` adds one batch:

1. **reweight** by the batch likelihood, tempered when the batch is very informative: the
   exponent ``phi`` on the new batch rises from 0 to 1 in stages, each chosen by bisection so that
   the effective sample size (ESS) stays at ``ess_target`` times its value before the stage
   (``ess_target * N`` after a resample; Jasra et al. 2011);
2. **resample** (systematic) when the ESS falls below ``resample_threshold * N`` and at every
   intermediate stage;
3. **move** the resampled particles in the unconstrained space of the parameters (log / logit
   transforms, Jacobians included; :mod:`~vvuq_twin.assimilation.targets`) by Metropolis-Hastings
   kernels targeting ``prior x likelihood(all past data) x likelihood(new batch)^phi`` - so the
   past data are kept (as chunks) and their log-likelihood is recomputed at the proposals. The
   kernel (independent Gaussian or Gaussian-mixture proposal fitted to the particles, MALA with
   the model's gradient, or random walk) is chosen by a one-step pilot and adapted between
   steps (step size to a target acceptance; an independent proposal whose measured decay of the
   mixing criterion cannot meet it hands over to the gradient kernel, and is not piloted again in
   later stages); steps continue until the rank correlation between
   start and end positions is small for every coordinate, or a :class:`MixingWarning` says it was
   not (:mod:`~vvuq_twin.assimilation.kernels`). Proposals outside the support are rejected on
   the prior, without evaluating the likelihood. The report records kernel, acceptance, step
   sizes, per-parameter mixing and the cost (likelihood calls, particle evaluations, seconds);
4. **fall back** to a full refit callback when the particle approximation collapses (ESS of the
   one-step reweight below ``collapse_ess * N``, more than ``max_stages`` tempering stages, or an
   MCMC acceptance rate below ``min_acceptance``), recording why.

The log-likelihood must be vectorised over particles and additive over observations:
``log_likelihood(theta, data) -> (n_particles,)`` where ``theta`` maps parameter names to arrays
with leading dim ``particle`` and ``data`` maps variable names (and ``time``) to arrays along the
observations, so that evaluating it on concatenated batches equals the sum over the batches.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import xarray as xr

from .._rng import RNGLike, as_generator
from ..exceptions import VVUQError
from .kernels import KERNELS, Evaluation, MoveState, rejuvenate
from ._rows import _n_rows
from .targets import CallableModel, ParticleModel, TemperedTarget, thin_chunk
from .weights import effective_sample_size, normalize_log_weights, systematic_resample

__all__ = [
    "ParticlePosterior",
    "UpdateReport",
    "ParticleCollapseError",
    "MixingWarning",
    "LogDensity",
    "RefitFn",
    "smc_update",
    "concat_data",
]

Theta = Mapping[str, np.ndarray]
Data = Mapping[str, np.ndarray]


class LogDensity(Protocol):
    """``log_likelihood(theta, data) -> (n,)``; ``log_prior(theta) -> (n,)`` (no ``data``)."""

    def __call__(self, theta: Theta, *args: Any) -> np.ndarray: ...


#: ``refit(all_data, rng) -> ParticlePosterior | dict of arrays`` (equally weighted draws)
RefitFn = Callable[[Data, np.random.Generator], "ParticlePosterior | Mapping[str, np.ndarray]"]


class ParticleCollapseError(VVUQError, RuntimeError):
    """The particle approximation collapsed and no refit callback was given to recover."""


from ..exceptions import MixingWarning  # noqa: E402 - re-exported


# --------------------------------------------------------------------------------------------
# Particles
# --------------------------------------------------------------------------------------------
@dataclass
class ParticlePosterior:
    """Weighted particles of a static-parameter posterior.

    Parameters
    ----------
    values : dict of str -> array (n, ...)
        Parameter values, leading dim ``particle``.
    log_weights : array (n,), optional
        Normalised log weights (default equal weights).
    log_likelihood : array (n,), optional
        Cumulative log-likelihood of all data assimilated so far at each particle (default 0:
        the particles are draws from the prior).
    """

    values: dict[str, np.ndarray]
    log_weights: np.ndarray | None = None
    log_likelihood: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.values, Mapping) or not self.values:
            raise ValueError("`values` must be a non-empty dict of parameter name -> array (n, ...).")
        vals = {str(k): np.asarray(v, dtype=float) for k, v in self.values.items()}
        sizes = {k: (v.shape[0] if v.ndim else None) for k, v in vals.items()}
        n = next(iter(sizes.values()))
        if n is None or any(s != n for s in sizes.values()):
            raise ValueError(
                f"All parameter arrays need the same leading (particle) length; got {sizes}."
            )
        for k, v in vals.items():
            if not np.all(np.isfinite(v)):
                raise ValueError(f"Particles of {k!r} contain non-finite values.")
        self.values = vals
        self.log_weights = (np.full(n, -np.log(n)) if self.log_weights is None
                            else normalize_log_weights(np.asarray(self.log_weights, float).reshape(n)))
        self.log_likelihood = (np.zeros(n) if self.log_likelihood is None
                               else np.asarray(self.log_likelihood, float).reshape(n))

    @property
    def n_particles(self) -> int:
        return int(self.log_weights.size)

    @property
    def names(self) -> list[str]:
        return list(self.values)

    @property
    def ess(self) -> float:
        """Effective sample size of the weights."""
        return effective_sample_size(self.log_weights)

    # flatten to a matrix for the random-walk moves -----------------------------------------
    def _matrix(self) -> np.ndarray:
        return np.hstack([v.reshape(self.n_particles, -1) for v in self.values.values()])

    def _from_matrix(self, mat: np.ndarray) -> dict[str, np.ndarray]:
        out, j = {}, 0
        for k, v in self.values.items():
            size = int(np.prod(v.shape[1:], dtype=int))
            out[k] = mat[:, j:j + size].reshape((mat.shape[0],) + v.shape[1:])
            j += size
        return out

    def take(self, idx: np.ndarray) -> "ParticlePosterior":
        """Particles at ``idx`` with equal weights (after resampling)."""
        return ParticlePosterior({k: v[idx] for k, v in self.values.items()}, None,
                                 self.log_likelihood[idx])

    def mean(self) -> dict[str, np.ndarray]:
        """Weighted posterior mean of each parameter."""
        w = np.exp(self.log_weights)
        return {k: np.tensordot(w, v, axes=1) for k, v in self.values.items()}

    def sd(self) -> dict[str, np.ndarray]:
        """Weighted posterior standard deviation of each parameter."""
        w = np.exp(self.log_weights)
        m = self.mean()
        return {k: np.sqrt(np.tensordot(w, (v - m[k]) ** 2, axes=1)) for k, v in self.values.items()}

    def resample(self, n: int | None = None, *, rng: RNGLike = None) -> dict[str, np.ndarray]:
        """Equally weighted draws (systematic resampling) as a dict of arrays."""
        idx = systematic_resample(self.log_weights, as_generator(rng), n)
        return {k: v[idx] for k, v in self.values.items()}

    # xarray -----------------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """Dataset with dim ``particle``: one variable per parameter plus ``log_weight`` and
        ``cum_log_likelihood``."""
        data = {}
        for k, v in self.values.items():
            dims = ("particle",) + tuple(f"{k}_dim_{i}" for i in range(v.ndim - 1))
            data[k] = (dims, v)
        data["log_weight"] = ("particle", self.log_weights)
        data["cum_log_likelihood"] = ("particle", self.log_likelihood)
        return xr.Dataset(data, coords={"particle": np.arange(self.n_particles)},
                          attrs={"parameters": " ".join(self.values)})

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, *, names: list[str] | None = None) -> "ParticlePosterior":
        """Inverse of :meth:`to_dataset`; also accepts an ArviZ-style posterior with dims
        ``chain``/``draw`` (stacked into ``particle``, equal weights)."""
        if "chain" in ds.dims and "draw" in ds.dims:
            ds = ds.stack(particle=("chain", "draw")).reset_index("particle", drop=True)
            ds = ds.assign_coords(particle=np.arange(ds.sizes["particle"]))
        if "particle" not in ds.dims:
            raise ValueError(
                f"Expected a Dataset with dim 'particle' (or 'chain' and 'draw'), got dims {dict(ds.sizes)}."
            )
        if names is None:
            names = (ds.attrs["parameters"].split() if "parameters" in ds.attrs
                     else [v for v in ds.data_vars if v not in ("log_weight", "cum_log_likelihood")])
        missing = [n for n in names if n not in ds.data_vars]
        if missing:
            raise ValueError(f"Parameters {missing} are not in the Dataset (has {list(ds.data_vars)}).")
        values = {n: ds[n].transpose("particle", ...).values for n in names}
        lw = ds["log_weight"].values if "log_weight" in ds else None
        ll = ds["cum_log_likelihood"].values if "cum_log_likelihood" in ds else None
        return cls(values, lw, ll)


@dataclass
class UpdateReport:
    """What one assimilation step did and why (JSON-serialisable via :meth:`to_dict`)."""

    batch_index: int
    status: str  # "reweighted", "resample-move", "refit", "rejected"
    n_obs: int = 0
    ess_one_step: float = float("nan")
    ess_final: float = float("nan")
    phis: list[float] = field(default_factory=list)
    acceptance: list[float] = field(default_factory=list)
    n_likelihood_evals: int = 0
    reason: str = ""
    time_range: list[Any] = field(default_factory=list)
    #: rejuvenation kernel used at each move stage, and why the last was chosen
    kernel: list[str] = field(default_factory=list)
    kernel_reason: str = ""
    #: move steps and final step size (MALA / random walk; NaN for independent proposals) per stage
    n_moves: list[int] = field(default_factory=list)
    step_sizes: list[float] = field(default_factory=list)
    #: per parameter: largest absolute Spearman rank correlation between start and end positions of
    #: the last stage's moves (0: fully decorrelated); the threshold and whether every stage met it
    mixing: dict[str, float] = field(default_factory=dict)
    mixing_threshold: float = float("nan")
    mixing_ok: bool | None = None
    #: distinct particles after the last move / N; largest fraction of particles a stage left unmoved
    unique_fraction: float = float("nan")
    stuck_fraction: float = float("nan")
    #: cost: vectorised likelihood calls with gradient, particle x chunk likelihood evaluations,
    #: proposals refused on the prior alone, data chunks evaluated per move, wall-clock seconds
    n_gradient_evals: int = 0
    n_point_evals: int = 0
    n_outside_support: int = 0
    n_chunks: int = 1
    seconds: float = float("nan")
    #: particle x observation likelihood terms evaluated exactly, and by the surrogate gradient
    #: of the HMC trajectories (0 without one); rows per exact / surrogate evaluation
    n_row_evals: int = 0
    n_surrogate_row_evals: int = 0
    n_surrogate_evals: int = 0
    rows_exact: int = 0
    rows_surrogate: int = 0
    #: per move stage: residual sd (nats) of the surrogate's fitted correction at the particles
    surrogate_residual_sd: list[float] = field(default_factory=list)
    #: hierarchical blocks moved by the population group move, and its acceptance per stage
    population_blocks: list[str] = field(default_factory=list)
    population_acceptance: list[float] = field(default_factory=list)
    #: sufficient-statistic reduction of the past chunks: whether any chunk was reduced, the
    #: past rows before and after (rows evaluated per exact past evaluation), and per chunk why
    #: it was (not) reduced (:mod:`~vvuq_twin.assimilation.sufficient`)
    sufficient_statistics: bool = False
    rows_past: int = 0
    rows_past_reduced: int = 0
    sufficient_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("ess_one_step", "ess_final", "mixing_threshold", "unique_fraction", "stuck_fraction", "seconds"):
            d[k] = None if not np.isfinite(d[k]) else float(d[k])
        d["step_sizes"] = [None if not np.isfinite(v) else float(v) for v in d["step_sizes"]]
        d["surrogate_residual_sd"] = [None if not np.isfinite(v) else float(v) for v in d["surrogate_residual_sd"]]
        d["population_acceptance"] = [None if not np.isfinite(v) else float(v) for v in d["population_acceptance"]]
        d["time_range"] = [
            v.item() if isinstance(v, (np.integer, np.floating)) else (v if isinstance(v, (int, float)) else str(v))
            for v in d["time_range"]
        ]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "UpdateReport":
        d = dict(d)
        for k in ("ess_one_step", "ess_final", "mixing_threshold", "unique_fraction", "stuck_fraction", "seconds"):
            d[k] = float("nan") if d.get(k) is None else float(d[k])
        d["step_sizes"] = [float("nan") if v is None else float(v) for v in d.get("step_sizes", [])]
        d["population_acceptance"] = [float("nan") if v is None else float(v)
                                      for v in d.get("population_acceptance", [])]
        d["surrogate_residual_sd"] = [float("nan") if v is None else float(v)
                                      for v in d.get("surrogate_residual_sd", [])]
        return cls(**d)


def concat_data(parts: list[Data]) -> dict[str, np.ndarray]:
    """Concatenate batch dicts along the observation axis (keys must agree)."""
    parts = [p for p in parts if p]
    if not parts:
        return {}
    keys = list(parts[0])
    return {k: np.concatenate([np.asarray(p[k]) for p in parts], axis=0) for k in keys}


# --------------------------------------------------------------------------------------------
# The update
# --------------------------------------------------------------------------------------------
def _next_phi(log_w: np.ndarray, ll: np.ndarray, phi: float, target: float) -> float:
    """Largest phi' in (phi, 1] with ESS(log_w + (phi' - phi) ll) >= target (bisection)."""
    def ess(p: float) -> float:
        return effective_sample_size(log_w + (p - phi) * np.where(np.isfinite(ll), ll, -1e300))

    if ess(1.0) >= target:
        return 1.0
    lo, hi = phi, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if ess(mid) >= target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return max(lo, phi + 1e-12)


def _model_for(log_likelihood: Any, log_prior: Any, posterior: ParticlePosterior,
               transforms: Mapping[str, Any] | None) -> ParticleModel:
    if isinstance(log_likelihood, ParticleModel):
        if transforms:
            raise ValueError("`transforms` applies to plain callables; a ParticleModel (e.g. a "
                             "twin's TwinLogDensity) defines its own unconstrained space.")
        return log_likelihood
    if not callable(log_likelihood) or not callable(log_prior):
        raise TypeError("`log_likelihood` must be a ParticleModel or a callable (theta, data) -> (n,), "
                        "with `log_prior` a callable (theta) -> (n,).")
    shapes = {k: v.shape[1:] for k, v in posterior.values.items()}
    return CallableModel(log_likelihood, log_prior, shapes, transforms)


def _mixing_by_parameter(rho: np.ndarray, posterior: ParticlePosterior) -> dict[str, float]:
    """Largest |rank correlation| (start vs end of the moves) over each parameter's coordinates."""
    out, j = {}, 0
    for k, v in posterior.values.items():
        size = int(np.prod(v.shape[1:], dtype=int))
        out[k] = float(np.max(np.abs(rho[j:j + size]))) if size else 0.0
        j += size
    return out


def smc_update(
    posterior: ParticlePosterior,
    batch: Data,
    log_likelihood: LogDensity | ParticleModel,
    log_prior: LogDensity | None = None,
    *,
    past_data: Data | Sequence[Data] | None = None,
    ess_target: float = 0.5,
    resample_threshold: float = 0.5,
    kernel: str = "auto",
    n_mcmc_steps: int = 1,
    max_mcmc_steps: int = 30,
    max_rank_correlation: float = 0.1,
    target_acceptance: float | None = None,
    transforms: Mapping[str, Any] | None = None,
    max_stages: int = 30,
    collapse_ess: float = 0.0,
    min_acceptance: float = 0.02,
    refit: RefitFn | None = None,
    batch_index: int = 0,
    surrogate_thin: int | None = None,
    surrogate_min_rows: int = 32,
    population_moves: int = 4,
    trajectory_length: float = 3.0,
    sufficient_statistics: bool | str = "auto",
    rng: RNGLike = None,
) -> tuple[ParticlePosterior, UpdateReport]:
    """Assimilate one batch into a particle posterior (reweight, temper, resample, move).

    Parameters
    ----------
    posterior : ParticlePosterior
        The posterior given ``past_data`` (not modified); its ``log_likelihood`` must hold each
        particle's log-likelihood of ``past_data`` (the moves compare proposals against it).
    batch : dict of arrays
        The new data (variables and ``time`` along the observation axis).
    log_likelihood : ParticleModel or callable ``(theta, data) -> (n,)``
        A :class:`~vvuq_twin.assimilation.targets.ParticleModel` (the twin's compiled model,
        with its own unconstrained space and gradients), or a natural-scale callable vectorised
        over particles and additive over observations.
    log_prior : callable ``(theta) -> (n,)``, optional
        Log prior density (``-inf`` outside the support); not needed with a ParticleModel.
    past_data : dict of arrays or list of them, optional
        All data assimilated so far (needed by the moves): one dict of concatenated arrays, or a
        list of chunks whose log-likelihoods are summed.
    ess_target : float in (0, 1)
        Tempering keeps the ESS after each stage at ``ess_target`` times the ESS the stage
        starts from (``ess_target * N`` after a resample).
    resample_threshold : float in (0, 1]
        Resample-move when the final ESS falls below this fraction of N.
    kernel : {"auto", "independent", "mixture", "mala", "hmc", "rwm"}
        Rejuvenation kernel in unconstrained space (see
        :func:`~vvuq_twin.assimilation.kernels.rejuvenate`); ``"auto"`` pilots the candidates at
        every stage and keeps the one that moves the particles furthest per evaluation. The
        kernel used is reported.
    n_mcmc_steps, max_mcmc_steps : int
        Least and most move steps per stage; between them the moves continue until every
        coordinate's rank correlation between start and end positions is at most
        ``max_rank_correlation`` (with at most ``3.5/sqrt(N)``, the sampling noise floor).
    max_rank_correlation : float
        The decorrelation criterion. An update that does not meet it within ``max_mcmc_steps``
        warns (:class:`MixingWarning`) and says so in its report.
    target_acceptance : float, optional
        Target acceptance of the step-size adaptation (default 0.57 MALA, 0.65 HMC, 0.3
        random walk).
    transforms : dict name -> spec, optional
        For plain callables: the transform to unconstrained space of each bounded parameter
        (``"log"``, ``("interval", a, b)``, ``("lower", a)``, ``("upper", b)``); see
        :class:`~vvuq_twin.assimilation.targets.CallableModel`.
    max_stages : int
        More tempering stages than this counts as a collapse.
    collapse_ess : float in [0, 1)
        A one-step-reweight ESS below ``collapse_ess * N`` counts as a collapse (0: never).
    min_acceptance : float
        A move acceptance rate below this counts as a collapse (the moves do not mix).
    refit : callable ``(all_data, rng) -> ParticlePosterior | dict``, optional
        Full refit used on collapse. Without it, a collapse raises
        :class:`ParticleCollapseError` (the input posterior is untouched).
    batch_index : int
        Recorded in the report.
    surrogate_thin : int or None
        HMC trajectories follow the gradient of a surrogate of the past likelihood in which every
        past chunk of at least ``surrogate_min_rows`` rows is thinned to every
        ``surrogate_thin``-th row of each unit and scaled by ``n/m``
        (:func:`~vvuq_twin.assimilation.targets.thin_chunk`; smaller chunks and the new batch
        enter exactly). Each trajectory's end point is accepted or rejected on the exact target,
        so the update stays exact; only the cost (rows evaluated per leapfrog step) and the
        acceptance change. ``None`` (default) or 1: exact gradients along the trajectories.
        Worth it only where thinned rows are nearly redundant: the surrogate's error (reported
        per stage as ``surrogate_residual_sd``, nats, after a fitted quadratic correction) must
        be well below 1 nat, or the acceptance collapses.
    surrogate_min_rows : int
        Past chunks with fewer rows are not thinned.
    population_moves : int
        When the model declares hierarchical blocks (``population_blocks()``: a twin's per-unit
        parameters with an inferred population scale), every kernel step is followed by this
        many exact population group moves per block
        (:func:`~vvuq_twin.assimilation.kernels.population_step`: location and log scale step,
        the unit values of a non-centred block held fixed), one density evaluation each. They
        move the population scale along the funnel of a non-centred parameter whose units the
        data pin down, which a fixed-metric HMC crosses only slowly. 0 disables them.
    trajectory_length : float
        HMC trajectory length in particle sds (leapfrog steps = length / step size, at most
        32).
    sufficient_statistics : True, False or "auto"
        Evaluate the past chunks by their sufficient statistics where the observation model
        admits an exact reduction (a twin's Normal, LogNormal or Poisson rows; replicate rows -
        same unit, inputs and known sd - merged into one row per group;
        :mod:`~vvuq_twin.assimilation.sufficient`). Each reduction is checked against the full
        chunk (value and gradient, relative 1e-8) at a few particles before use; a chunk that is
        not reducible or fails the check is evaluated in full. ``"auto"`` reduces only chunks
        whose rows at least halve. The report records whether it was used, the past rows
        before and after, and per chunk the reason. Default "auto" (a twin without replicate
        rows keeps every chunk in full, at the cost of grouping its rows once).
    rng : Generator, int or None

    Returns
    -------
    (ParticlePosterior, UpdateReport)
    """
    if not isinstance(posterior, ParticlePosterior):
        raise TypeError(f"`posterior` must be a ParticlePosterior, got {type(posterior).__name__}.")
    if not 0 < ess_target < 1:
        raise ValueError(f"`ess_target` must lie in (0, 1), got {ess_target}.")
    if not 0 < resample_threshold <= 1:
        raise ValueError(f"`resample_threshold` must lie in (0, 1], got {resample_threshold}.")
    if not 0 <= collapse_ess < 1:
        raise ValueError(f"`collapse_ess` must lie in [0, 1), got {collapse_ess}.")
    if n_mcmc_steps < 1 or max_mcmc_steps < n_mcmc_steps:
        raise ValueError(f"Need 1 <= n_mcmc_steps <= max_mcmc_steps, got {n_mcmc_steps} and {max_mcmc_steps}.")
    if not 0 < max_rank_correlation < 1:
        raise ValueError(f"`max_rank_correlation` must lie in (0, 1), got {max_rank_correlation}.")
    if kernel not in ("auto",) + KERNELS:
        raise ValueError(f"`kernel` must be 'auto' or one of {KERNELS}, got {kernel!r}.")
    if int(population_moves) < 0:
        raise ValueError(f"`population_moves` must be >= 0, got {population_moves}.")
    if not trajectory_length > 0:
        raise ValueError(f"`trajectory_length` must be positive, got {trajectory_length}.")
    t_start = time.perf_counter()
    model = _model_for(log_likelihood, log_prior, posterior, transforms)
    if kernel in ("mala", "hmc") and not model.has_gradient:
        raise ValueError(f"kernel={kernel!r} needs gradients, which this model does not provide; use "
                         "'auto', 'independent', 'mixture' or 'rwm' (or pass a twin's TwinLogDensity).")
    g = as_generator(rng)
    N = posterior.n_particles
    if past_data is None:
        past: list[dict] = []
    elif isinstance(past_data, Mapping):
        past = [dict(past_data)] if past_data else []
    else:
        past = [dict(c) for c in past_data if c]
    n_obs = int(np.asarray(next(iter(batch.values()))).shape[0]) if batch else 0
    report = UpdateReport(batch_index=batch_index, status="reweighted", n_obs=n_obs,
                          n_chunks=len(past) + 1)
    if surrogate_thin is not None and int(surrogate_thin) < 1:
        raise ValueError(f"`surrogate_thin` must be None or a positive integer, got {surrogate_thin}.")
    surrogate_past = None
    if surrogate_thin is not None and int(surrogate_thin) > 1 and model.has_gradient:
        parts, thinned = [], False
        for c in past:
            nrow = int(np.asarray(next(iter(c.values()))).shape[0])
            if nrow >= max(int(surrogate_min_rows), 2 * int(surrogate_thin)):
                tc, w = thin_chunk(c, int(surrogate_thin))
                parts.append((w, tc))
                thinned = True
            else:
                parts.append((1.0, c))
        surrogate_past = parts if thinned else None
    z = model.to_unconstrained(posterior.values)
    check_z = z[np.unique(np.linspace(0, N - 1, min(N, 4)).astype(int))]
    target = TemperedTarget(model, past, batch, surrogate_past,
                            sufficient_statistics=sufficient_statistics, check_z=check_z)
    report.rows_exact = int(target.rows_exact)
    report.rows_surrogate = int(target.rows_surrogate or 0)
    rows_past = sum(_n_rows(c) for c in past)

    def reduction_costs() -> None:
        report.rows_exact = int(target.rows_exact)
        report.rows_past = rows_past
        if target.reduction_planned:
            report.sufficient_statistics = bool(target.reduction.used)
            report.rows_past_reduced = int(target.reduction.n_rows_reduced)
            report.sufficient_reason = target.reduction.reason
        else:
            report.rows_past_reduced = rows_past
            report.sufficient_reason = ("not requested (sufficient_statistics=False)"
                                        if sufficient_statistics is False else
                                        "not needed: the update did not evaluate the past chunks")

    blocks = tuple(model.population_blocks()) if int(population_moves) > 0 and hasattr(model, "population_blocks") else ()
    report.population_blocks = [b.name or str(i) for i, b in enumerate(blocks)]
    ll_new, _ = target.safe_log_likelihood(z, batch, False)
    ll_new = np.where(np.isnan(np.asarray(ll_new, float)), -np.inf, np.asarray(ll_new, float))
    report.n_likelihood_evals = 1
    report.n_point_evals = N
    if not np.isfinite(ll_new).any():
        raise ParticleCollapseError(
            f"Batch {batch_index}: the new data have zero likelihood under every particle; the "
            "posterior is left unchanged. Check the data (units, outliers) or refit."
        )
    report.ess_one_step = effective_sample_size(posterior.log_weights + ll_new)

    def finish_costs() -> None:
        reduction_costs()
        report.n_likelihood_evals += target.n_calls
        report.n_gradient_evals = target.n_gradient_calls
        report.n_point_evals += target.n_point_evals
        report.n_outside_support = target.n_outside_support
        report.n_row_evals = int(target.n_row_evals) + N * int(n_obs)
        report.n_surrogate_row_evals = int(target.n_surrogate_row_evals)
        report.n_surrogate_evals = int(target.n_surrogate_calls)
        report.seconds = time.perf_counter() - t_start

    def collapse(reason: str) -> tuple[ParticlePosterior, UpdateReport]:
        if refit is None:
            raise ParticleCollapseError(
                f"Batch {batch_index}: {reason}. The posterior is left unchanged; pass a `refit` "
                "callback to fall back to a full refit, or lower the batch size."
            )
        all_data = concat_data(past + [dict(batch)])
        new = refit(all_data, g)
        if not isinstance(new, ParticlePosterior):
            new = ParticlePosterior(dict(new))
        ll_all, _ = model.log_likelihood_z(model.to_unconstrained(new.values), all_data, False)
        new = ParticlePosterior(new.values, new.log_weights, ll_all)
        report.status, report.reason = "refit", f"{reason}; fell back to a full refit"
        report.ess_final = new.ess
        report.n_likelihood_evals += 1
        finish_costs()
        return new, report

    if report.ess_one_step < collapse_ess * N:
        return collapse(
            f"ESS of the one-step reweight is {report.ess_one_step:.3g} "
            f"({100 * report.ess_one_step / N:.3g}% of {N} particles), below the collapse "
            f"threshold collapse_ess={collapse_ess}"
        )

    log_w = posterior.log_weights.copy()
    ll_past = posterior.log_likelihood.copy()
    lp, _ = model.log_prior_z(z, False)
    ev = Evaluation(np.asarray(lp, float), ll_past, ll_new)
    phi = 0.0
    step_size: dict[str, float] | None = None
    handed_over: tuple[str, ...] = ()
    mixing: dict[str, float] = {}
    while phi < 1.0:
        if len(report.phis) >= max_stages:
            return collapse(f"tempering needed more than max_stages={max_stages} stages "
                            f"(reached phi={phi:.3g})")
        # each stage keeps ESS >= ess_target x the ESS it starts from (N after a resample)
        tgt = ess_target * effective_sample_size(log_w)
        phi_next = _next_phi(log_w, ev.ll_new, phi, tgt)
        log_w = normalize_log_weights(log_w + (phi_next - phi) * np.where(np.isfinite(ev.ll_new), ev.ll_new, -np.inf))
        phi = phi_next
        report.phis.append(float(phi))
        if phi < 1.0 or effective_sample_size(log_w) < resample_threshold * N:
            idx = systematic_resample(log_w, g)
            if model.has_gradient and hasattr(model, "prepare_gradient"):
                # a move needs every chunk's compiled value-and-gradient function (a model may
                # have evaluated the new batch with a function compiled for compile speed)
                # (a chunk evaluated by its sufficient statistics needs only its reduced one)
                for chunk in target.exact_past + [dict(batch)]:
                    model.prepare_gradient(chunk)
            state = MoveState(z[idx], Evaluation(*(None if a is None else a[idx] for a in ev)))
            if target.has_surrogate:
                report.surrogate_residual_sd.append(float(target.fit_surrogate(state.z, state.ev.ll_past)))
            res = rejuvenate(g, state, target, phi, kernel=kernel, has_gradient=model.has_gradient,
                             min_steps=n_mcmc_steps, max_steps=max_mcmc_steps,
                             max_rank_correlation=max_rank_correlation,
                             target_acceptance=target_acceptance,
                             step_size=step_size,
                             surrogate=target.surrogate_grad if target.has_surrogate else None,
                             surrogate_cost=target.surrogate_cost,
                             trajectory_length=float(trajectory_length),
                             population_blocks=blocks, population_moves=int(population_moves),
                             exclude=handed_over)
            z, ev = res.state.z, res.state.ev
            log_w = np.full(N, -np.log(N))
            acc = float(np.mean(res.acceptance))
            report.acceptance.append(acc)
            if blocks:
                report.population_acceptance.append(float(np.mean(res.population_acceptance))
                                                    if res.population_acceptance else float("nan"))
            report.kernel.append(res.kernel)
            report.kernel_reason = res.kernel_reason
            report.n_moves.append(int(res.n_steps))
            report.step_sizes.append(float(res.step_sizes[-1]))
            step_size = res.adapted
            # an independent proposal that could not mix in this stage is not piloted in the next
            # when a gradient kernel takes over (without a gradient the fallback is the random
            # walk, which cannot cross between modes: there the proposal is tried at every stage)
            if model.has_gradient:
                handed_over = tuple(dict.fromkeys(handed_over + tuple(res.handed_over)))
            report.mixing_threshold = float(res.criterion)
            mixing = _mixing_by_parameter(res.rank_correlation, posterior)
            report.mixing = mixing
            report.mixing_ok = bool(res.converged) and report.mixing_ok is not False
            report.unique_fraction = float(np.unique(z, axis=0).shape[0] / N)
            report.stuck_fraction = float(res.stuck_fraction if not np.isfinite(report.stuck_fraction)
                                          else max(report.stuck_fraction, res.stuck_fraction))
            report.status = "resample-move"
            if acc < min_acceptance:
                return collapse(f"move acceptance rate {acc:.3g} ({res.kernel}) below "
                                f"min_acceptance={min_acceptance}")
    finish_costs()
    values = model.from_unconstrained(z)
    values = {k: np.asarray(values[k], float).reshape(posterior.values[k].shape) for k in posterior.values}
    out = ParticlePosterior(values, log_w, ev.ll_past + ev.ll_new)
    report.ess_final = out.ess
    if not report.reason:
        report.reason = (f"tempered in {len(report.phis)} stages" if len(report.phis) > 1
                         else ("reweighted" if report.status == "reweighted" else "reweighted, resampled and moved"))
    if report.mixing_ok is False:
        worst = sorted(mixing.items(), key=lambda kv: -kv[1])[:5]
        msg = (f"Batch {batch_index}: the particles did NOT decorrelate within max_mcmc_steps="
               f"{max_mcmc_steps} ({report.kernel[-1]} kernel, acceptance {report.acceptance[-1]:.2f}): "
               f"largest fraction of particles never moved {report.stuck_fraction:.3f}; "
               f"rank correlation start-vs-end (threshold {report.mixing_threshold:.3g}): "
               + ", ".join(f"{k} {v:.2f}" for k, v in worst)
               + ". The posterior may be too narrow; raise max_mcmc_steps, use more particles, "
               "or refit.")
        report.reason += "; " + msg
        warnings.warn(msg, MixingWarning, stacklevel=2)
    return out, report

