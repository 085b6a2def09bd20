"""Assimilate new data into a calibrated twin: the twin's own PyMC model as an SMC likelihood.

:func:`twin_log_density` turns a :class:`~vvuq_twin.Twin` into the two vectorised functions the
SMC update needs. For a data set it builds ``twin.build_model(data)``, takes the log-density terms
of the free random variables and of the observed ``y`` conditioned on values of the free
variables (``pymc.logprob.conditional_logp``, natural - untransformed - scale), vectorises the
graph over a leading ``particle`` axis (``pytensor.graph.replace.vectorize_graph``) and compiles
it; compiled functions are cached per data set.

:func:`assimilate` takes a :class:`~vvuq_twin.TwinResult` (or the output of a previous
:func:`assimilate`), turns its posterior draws (``chain`` x ``draw`` stacked into ``particle``)
into particles and runs :func:`~vvuq_twin.assimilation.smc_update` with the new
:class:`~vvuq_twin.TwinData`; on collapse it falls back to :func:`~vvuq_twin.calibrate` on all data
and records why.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import xarray as xr

from .._rng import RNGLike, as_generator, seed_int
from ..exceptions import DataValidationError, TwinSpecificationError
from ..inference._fast_predictive import _python_mode
from ..inference.ledger import Ledger
from .smc import ParticlePosterior, UpdateReport, concat_data, smc_update

if TYPE_CHECKING:
    from ..validation.drift import CusumDetector
    from ..validation.quality import DataQualityGate

__all__ = ["TwinLogDensity", "twin_log_density", "TwinAssimilation", "assimilate"]


def _data_dict(data: Any) -> dict[str, np.ndarray]:
    """TwinData -> arrays along the observation axis (``x``, ``y``, optional ``unit``, ``y_sd``)."""
    out = {"x": np.asarray(data.x, float), "y": np.asarray(data.y, float)}
    if data.unit is not None:
        out["unit"] = np.asarray(data.unit).astype(str)
    if data.y_sd is not None:
        out["y_sd"] = np.asarray(data.y_sd, float)
    return out


def twin_with_units(twin: Any, units: Sequence[str]) -> Any:
    """A hierarchical twin with its units listed, in order (what an assimilation fixes: the
    calibrated units, then any new ones). Its declaration hash differs from the twin's without
    listed units; a saved assimilated result is loaded with this twin."""
    from ..twin import Hierarchy

    return dataclasses.replace(twin, hierarchy=Hierarchy(dim=twin.hierarchy.dim, units=tuple(units)))


class TwinLogDensity:
    """Vectorised log prior and log-likelihood of a twin's parameters (see module docstring).

    Parameters
    ----------
    twin : Twin
    units : sequence of str, optional
        Units of a hierarchical twin, in the order of the calibration (fixes the ``unit`` coord
        so that batches naming a subset of units index the same per-unit parameters).
    input_names : sequence of str, optional
        Names of the input columns.
    cache_size : int
        Number of compiled likelihood functions kept (one per distinct data set).
    """

    def __init__(self, twin: Any, *, units: tuple[str, ...] | None = None,
                 input_names: list[str] | None = None, cache_size: int = 256) -> None:
        if twin.hierarchy is not None and units is not None:
            twin = twin_with_units(twin, units)
        self.twin = twin
        self.input_names = input_names
        self._cache: OrderedDict[Any, Callable] = OrderedDict()
        self._cache_size = int(cache_size)
        self._prior_fn: Callable | None = None
        self._prior_data: dict[str, np.ndarray] | None = None
        self._space: tuple | None = None
        self._prior_z: Callable | None = None
        self._prior_z_c = False
        self._prior_model: tuple | None = None
        self.value_names: list[str] = []
        self.value_shapes: dict[str, tuple[int, ...]] = {}
        #: number of likelihood functions compiled (one per data chunk and gradient flag)
        self.n_compiled = 0
        #: value-only likelihood functions compiled in the fast-compile mode
        self.n_compiled_fast = 0
        self.free_names: list[str] | None = None
        self.free_shapes: dict[str, tuple[int, ...]] = {}

    def twin_data(self, d: Mapping[str, np.ndarray]):
        from ..twin import TwinData

        return TwinData(x=d["x"], y=d["y"], unit=d.get("unit"), y_sd=d.get("y_sd"),
                        input_names=self.input_names)

    def _compile(self, d: Mapping[str, np.ndarray], prior: bool) -> Callable:
        import pytensor
        import pytensor.tensor as pt
        from pymc.logprob.basic import conditional_logp
        from pytensor.graph.replace import vectorize_graph

        model = self.twin.build_model(self.twin_data(d), check=False)
        free = list(model.free_RVs)
        dims = {rv.name: model.named_vars_to_dims.get(rv.name) or () for rv in free}
        per_obs = [n for n, ds in dims.items() if any(str(x).startswith("obs") for x in ds)]
        if per_obs:
            raise TwinSpecificationError(
                f"Twin {self.twin.name!r} has latent variables {per_obs} with one value per "
                "observation (e.g. a GP discrepancy); new data bring new latent values that the "
                "particles do not carry. Use HSGPDiscrepancy/BiasDiscrepancy or recalibrate."
            )
        names = [rv.name for rv in free]
        if self.free_names is None:
            self.free_names = names
            self.free_shapes = {rv.name: tuple(int(s) for s in rv.shape.eval()) for rv in free}
        values = {rv: rv.type(name=rv.name) for rv in free}
        y_rv = model["y"]
        rv_values = dict(values)
        rv_values[y_rv] = model.rvs_to_values[y_rv]
        logps = conditional_logp(rv_values)
        if prior:
            out = pt.add(*[logps[values[rv]].sum() for rv in free])
        else:
            out = logps[rv_values[y_rv]].sum()
        batched = {v: pt.tensor(name=f"{v.name}_particles", shape=(None,) + v.type.shape, dtype=v.dtype)
                   for v in values.values()}
        out_b = vectorize_graph(out, replace=batched)
        fn = pytensor.function([batched[values[rv]] for rv in free], out_b)
        return lambda theta: fn(*[np.asarray(theta[n], dtype=float) for n in names])

    @staticmethod
    def _key(d: Mapping[str, np.ndarray]) -> str:
        h = hashlib.sha256()
        for k in sorted(d):
            a = np.asarray(d[k])
            h.update(k.encode())
            h.update(str(a.shape).encode())
            h.update(a.astype(str).tobytes() if a.dtype.kind in "UO" else np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def log_likelihood(self, theta: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray]) -> np.ndarray:
        """Log-likelihood (n_particles,) of ``data`` (dict from TwinData) at each particle."""
        key = self._key(data)
        fn = self._cache.get(key)
        if fn is None:
            fn = self._compile(data, prior=False)
            self._cache[key] = fn
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return np.asarray(fn(theta), dtype=float)

    def log_prior(self, theta: Mapping[str, np.ndarray]) -> np.ndarray:
        """Log prior density (n_particles,) on the natural scale of each free variable.

        Compiled on first use (the SMC update itself uses :meth:`log_prior_z`)."""
        if self._prior_fn is None:
            if self._prior_data is None:
                raise RuntimeError("Call log_likelihood (or prepare) once before log_prior.")
            self._prior_fn = self._compile(self._prior_data, prior=True)
        return np.asarray(self._prior_fn(theta), dtype=float)

    def prepare(self, data: Mapping[str, np.ndarray]) -> None:
        """Learn the free variables from a data set and compile the unconstrained space (the
        transforms and the prior with its gradient). The natural-scale prior, which the update
        does not use, is compiled only when :meth:`log_prior` is called."""
        if self._prior_data is None:
            self._prior_data = dict(data)
        if self._space is None:
            self._compile_space(data)

    # ------------------------------------------------------------------------------------------
    # unconstrained space: PyMC's value variables (transforms and Jacobians as PyMC defines them)
    # ------------------------------------------------------------------------------------------
    has_gradient = True

    def _batched_values(self, model):
        import pytensor.tensor as pt

        free = list(model.free_RVs)
        vv = [model.rvs_to_values[rv] for rv in free]
        batched = {v: pt.tensor(name=f"{v.name}_particles", shape=(None,) + v.type.shape, dtype=v.dtype)
                   for v in vv}
        return free, vv, batched

    def _compile_space(self, d: Mapping[str, np.ndarray]) -> None:
        """Maps natural values <-> flat value-variable coordinates, and the unconstrained prior."""
        import pytensor
        import pytensor.tensor as pt
        from pytensor.graph.replace import graph_replace, vectorize_graph

        model = self.twin.build_model(self.twin_data(d), check=False)
        free, vv, batched = self._batched_values(model)
        if self.free_names is None:
            self.free_names = [rv.name for rv in free]
            self.free_shapes = {rv.name: tuple(int(s) for s in rv.shape.eval()) for rv in free}
        if [rv.name for rv in free] != list(self.free_names or [rv.name for rv in free]):
            raise TwinSpecificationError("The twin's free variables changed between data sets.")
        self.value_names = [v.name for v in vv]
        self.value_shapes = {v.name: tuple(int(s) for s in model.initial_point()[v.name].shape) for v in vv}
        # natural -> value (forward transforms), vectorised over particles
        nat_in = {rv: pt.tensor(name=f"{rv.name}_nat", shape=(None,) + rv.type.shape, dtype=rv.dtype)
                  for rv in free}
        nat_one = {rv: rv.type(name=f"{rv.name}_nat1") for rv in free}
        fwd = []
        for rv in free:
            tr = model.rvs_to_transforms.get(rv)
            fwd.append(nat_one[rv] if tr is None else tr.forward(nat_one[rv], *rv.owner.inputs))
        fwd = graph_replace(fwd, {rv: nat_one[rv] for rv in free}, strict=False)
        fwd_b = vectorize_graph(fwd, replace={nat_one[rv]: nat_in[rv] for rv in free})
        # the transforms run once or twice per update: compiled for compile speed (Python
        # linker, fast_compile rewrites), which on these small elementwise graphs costs a
        # fraction of a C compile and evaluates in milliseconds
        fast = _python_mode()
        f_fwd = pytensor.function([nat_in[rv] for rv in free], fwd_b, on_unused_input="ignore", mode=fast)
        # value -> natural (backward transforms)
        bwd = []
        for rv, v in zip(free, vv):
            tr = model.rvs_to_transforms.get(rv)
            bwd.append(v if tr is None else tr.backward(v, *rv.owner.inputs))
        bwd = model.replace_rvs_by_values(bwd)
        bwd_b = vectorize_graph(bwd, replace=batched)
        f_bwd = pytensor.function([batched[v] for v in vv], bwd_b, on_unused_input="ignore", mode=fast)
        names = [rv.name for rv in free]
        self._space = (names, f_fwd, f_bwd)
        # the prior (value and gradient) first through the Python linker: it compiles in about
        # a second where the C function cost 15 s (idle) to 45 s (loaded) with a cold PyTensor
        # cache, and an update that only reweights evaluates it once; a move stage compiles the
        # C function (prepare_gradient), which evaluates ~100x faster, and uses it from then on
        self._prior_model = (model, free, vv, batched)
        self._prior_z = self._compile_z_fn(model, free, vv, batched, prior=True, grad=True,
                                           mode=_python_mode())
        self._prior_z_c = False

    def _prepare_prior_gradient(self) -> None:
        """Replace the Python-linker prior by its C-compiled value-and-gradient function."""
        self._need_space()
        if not self._prior_z_c:
            model, free, vv, batched = self._prior_model
            self._prior_z = self._compile_z_fn(model, free, vv, batched, prior=True, grad=True)
            self._prior_z_c = True

    @staticmethod
    def _compile_z_fn(model, free, vv, batched, *, prior: bool, grad: bool,
                      mode: Any = None) -> Callable:
        import pytensor
        import pytensor.tensor as pt
        from pytensor.graph.replace import vectorize_graph

        out = model.logp(vars=free, jacobian=True) if prior else model.logp(vars=[model["y"]])
        out_b = vectorize_graph(out, replace=batched)
        ins = [batched[v] for v in vv]
        outs = [out_b]
        if grad:
            outs += list(pt.grad(out_b.sum(), ins, disconnected_inputs="ignore"))
        return pytensor.function(ins, outs, on_unused_input="ignore", mode=mode)

    def _split_z(self, z: np.ndarray) -> list[np.ndarray]:
        n, j, out = z.shape[0], 0, []
        for name in self.value_names:
            shp = self.value_shapes[name]
            size = int(np.prod(shp, dtype=int))
            out.append(np.ascontiguousarray(z[:, j:j + size]).reshape((n,) + shp))
            j += size
        return out

    @staticmethod
    def _flat(parts: list[np.ndarray], n: int) -> np.ndarray:
        return np.hstack([np.asarray(p, float).reshape(n, -1) for p in parts])

    def _need_space(self) -> None:
        if self._space is None:
            raise RuntimeError("Call prepare(data) once before using the unconstrained space.")

    def to_unconstrained(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Flat value-variable coordinates (n, d) of natural parameter values."""
        self._need_space()
        names, f_fwd, _ = self._space
        n = np.asarray(values[names[0]]).shape[0]
        with np.errstate(all="ignore"):
            out = f_fwd(*[np.asarray(values[k], float) for k in names])
        z = self._flat(out, n)
        if not np.all(np.isfinite(z)):
            bad = sorted({names[i] for i, o in enumerate(out) if not np.all(np.isfinite(o))})
            raise ValueError(f"Particles of {bad} lie outside their support (log/logit of a boundary value).")
        return z

    def population_blocks(self) -> tuple:
        """Population blocks of the twin's per-unit parameters, for the SMC group move.

        One :class:`~vvuq_twin.assimilation.kernels.PopulationBlock` per per-unit parameter with
        an inferred population scale: the columns of its population location, of its scale
        (PyMC's log transform) and of its per-unit coordinates (the standardised offsets of a
        non-centred parameter, the unit values of a centred one), as the model builder names
        them (``<name>_mu``, ``<name>_sigma``, ``<name>_z`` / ``<name>_lin``). A parameter whose
        variables do not have that form (another transform, a fixed scale) gets no block.
        """
        from .kernels import PopulationBlock

        self._need_space()
        if self.twin.hierarchy is None:
            return ()
        start, j = {}, 0
        for name in self.value_names:
            start[name] = j
            j += int(np.prod(self.value_shapes[name], dtype=int))
        blocks = []
        for p in self.twin.parameters:
            if not p.per_unit:
                continue
            loc, scale = f"{p.name}_mu", f"{p.name}_sigma_log__"
            units = f"{p.name}_lin" if p.centered else f"{p.name}_z"
            if not all(v in start for v in (loc, scale, units)):
                continue
            if self.value_shapes[loc] != () or self.value_shapes[scale] != ():
                continue
            size = int(np.prod(self.value_shapes[units], dtype=int))
            blocks.append(PopulationBlock(start[loc], start[scale],
                                          tuple(range(start[units], start[units] + size)),
                                          bool(p.centered), p.name))
        return tuple(blocks)

    def from_unconstrained(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Natural parameter values of flat value-variable coordinates."""
        self._need_space()
        names, _, f_bwd = self._space
        with np.errstate(all="ignore"):
            out = f_bwd(*self._split_z(z))
        return {k: np.asarray(v, float) for k, v in zip(names, out)}

    def log_prior_z(self, z: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Log prior density in value-variable space (log-Jacobians included), and its gradient."""
        self._need_space()
        out = self._prior_z(*self._split_z(z))
        lp = np.asarray(out[0], float)
        return lp, (self._flat(out[1:], z.shape[0]) if grad else None)

    #: value-only calls on a data set with no compiled gradient function use a function compiled
    #: for speed of compilation (Python linker, fast_compile rewrites): a reweight-only update
    #: evaluates the new batch once, where the C compile would cost more than the evaluation
    fast_value_compile = True

    def _z_fn(self, data: Mapping[str, np.ndarray], *, fast_value: bool) -> Callable:
        key = ("z", self._key(data))
        fn = self._cache.get(key)
        if fn is None and fast_value:
            key_v = ("zv", key[1])
            fn = self._cache.get(key_v)
            if fn is None:
                fn = self._compile_fast_value(data)
                self._cache[key_v] = fn
                self.n_compiled_fast += 1
            else:
                self._cache.move_to_end(key_v)
            return fn
        if fn is None:
            model = self.twin.build_model(self.twin_data(data), check=False)
            free, vv, batched = self._batched_values(model)
            fn = self._compile_z_fn(model, free, vv, batched, prior=False, grad=True)
            self._cache[key] = fn
            self.n_compiled += 1
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return fn

    def _compile_fast_value(self, data: Mapping[str, np.ndarray]) -> Callable:
        import pytensor
        from pytensor.graph.replace import vectorize_graph

        model = self.twin.build_model(self.twin_data(data), check=False)
        free, vv, batched = self._batched_values(model)
        out_b = vectorize_graph(model.logp(vars=[model["y"]]), replace=batched)
        return pytensor.function([batched[v] for v in vv], [out_b], on_unused_input="ignore",
                                 mode=_python_mode())

    def prepare_gradient(self, data: Mapping[str, np.ndarray]) -> None:
        """Compile the value-and-gradient function of ``data`` and the prior's C function
        (before a move stage uses them)."""
        self._need_space()
        self._prepare_prior_gradient()
        self._z_fn(data, fast_value=False)

    def log_likelihood_z(self, z: np.ndarray, data: Mapping[str, np.ndarray],
                         grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Log-likelihood of ``data`` at value-variable coordinates, and its gradient.

        Without ``grad``, on a data set whose value-and-gradient function is not compiled yet
        (and with :attr:`fast_value_compile`), a value-only function compiled for compile speed
        is used (see :meth:`prepare_gradient`).
        """
        self._need_space()
        fn = self._z_fn(data, fast_value=(not grad) and self.fast_value_compile)
        out = fn(*self._split_z(z))
        return np.asarray(out[0], float), (self._flat(out[1:], z.shape[0]) if grad else None)

    # ------------------------------------------------------------------------------------------
    # sufficient-statistic reduction of past chunks (vvuq_twin.assimilation.sufficient)
    # ------------------------------------------------------------------------------------------
    def reduce_chunk(self, data: Mapping[str, np.ndarray]) -> Any:
        """The chunk reduced to one row per group of replicate rows, with its statistics.

        Cached per chunk (a reduction verified once is reused by later updates; a chunk found
        not reducible raises the same reason again without rebuilding).

        Raises
        ------
        NotReducible
            With the reason (see :mod:`vvuq_twin.assimilation.sufficient`).
        """
        from .sufficient import NotReducible, reduce_twin_chunk

        self._need_space()
        key = ("suff", self._key(data))
        hit = self._cache.get(key)
        if hit is None:
            try:
                hit = reduce_twin_chunk(self, data)
            except NotReducible as err:
                hit = err
            self._cache[key] = hit
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        if isinstance(hit, NotReducible):
            raise hit
        return hit

    def log_likelihood_reduced_z(self, z: np.ndarray, reduced: Any,
                                 grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Log-likelihood of a reduced chunk (:meth:`reduce_chunk`) at value-variable coordinates,
        and its gradient: equal to :meth:`log_likelihood_z` of the full chunk."""
        from .sufficient import compile_reduced

        self._need_space()
        out = compile_reduced(self, reduced)(*self._split_z(z), reduced.count, reduced.centre, reduced.within)
        return (np.asarray(out[0], float) + reduced.constant,
                self._flat(out[1:], z.shape[0]) if grad else None)


def twin_log_density(twin: Any, *, units: tuple[str, ...] | None = None,
                     input_names: list[str] | None = None) -> TwinLogDensity:
    """The vectorised log prior and log-likelihood of ``twin`` (see :class:`TwinLogDensity`)."""
    return TwinLogDensity(twin, units=units, input_names=input_names)


@dataclass
class TwinAssimilation:
    """A twin's posterior after streaming updates.

    Attributes
    ----------
    twin : Twin
    particles : ParticlePosterior
        Weighted particles of the free variables.
    data : TwinData
        All data assimilated so far (calibration data first).
    reports : list of UpdateReport
        One per :func:`assimilate` call, in order.
    chunks : list of dict
        The data as assimilated, one dict of arrays per batch (calibration data first); the
        likelihood of each is compiled once and reused by later updates.
    density : TwinLogDensity
        The compiled log densities (reused by later updates).
    ledger : Ledger
        The continual-VVUQ ledger (a copy of the calibration's, extended by each update's
        quality-gate, drift and coverage entries).
    rejected : list of dict
        Batches refused by the data-quality gate, kept with ``data`` (TwinData), ``reasons``
        (list of str), ``verdict`` (QualityVerdict) and ``batch_index``; never assimilated.
    pit_history : ndarray
        PIT values of all accepted batches under their one-step-ahead predictive, in order: the
        stream the CUSUM drift detector runs on (its state is carried across calls).
    """

    twin: Any
    particles: ParticlePosterior
    data: Any
    reports: list[UpdateReport]
    density: TwinLogDensity
    chunks: list[dict[str, np.ndarray]] = dataclasses.field(default_factory=list)
    ledger: Ledger = dataclasses.field(default_factory=Ledger)
    rejected: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pit_history: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    @property
    def posterior(self) -> xr.Dataset:
        """Particles as a Dataset (dim ``particle``, plus ``log_weight``)."""
        return self.particles.to_dataset()

    def draws(self, n: int | None = None, *, rng: RNGLike = None) -> xr.Dataset:
        """Equally weighted draws in ArviZ layout (dims ``chain`` = 1, ``draw``)."""
        vals = self.particles.resample(n, rng=rng)
        return xr.Dataset({k: (("chain", "draw") + tuple(f"{k}_dim_{i}" for i in range(v.ndim - 1)), v[None])
                           for k, v in vals.items()})


    def to_result(self, n: int | None = None, *, rng: RNGLike = None) -> Any:
        """The assimilated state as a :class:`~vvuq_twin.TwinResult` (for ``predict``, design, ...).

        Resamples the weighted particles into ``n`` equally weighted draws (default: as many as
        particles; ``chain`` = 1) with the twin model's dims and coords, and attaches the twin and
        all assimilated data, so that :func:`~vvuq_twin.predict`,
        :func:`~vvuq_twin.design.twin_design_utilities` and validation work on the updated twin.
        """
        import arviz as az

        from ..inference.results import TwinResult

        raw = self.draws(n, rng=rng)
        model = self.twin.build_model(self.data, check=False)
        dims_of = getattr(model, "named_vars_to_dims", {})
        data_vars, coords = {}, {}
        for name, da in raw.data_vars.items():
            dims = tuple(dims_of.get(name, ()) or ())
            if dims and len(dims) == da.ndim - 2:
                data_vars[name] = (("chain", "draw") + dims, da.values)
                for d in dims:
                    if d in model.coords and model.coords[d] is not None:
                        coords[d] = list(model.coords[d])
            else:
                data_vars[name] = (da.dims, da.values)
        post = xr.Dataset(data_vars, coords={"chain": [0], "draw": np.arange(raw.sizes["draw"]), **coords})
        idata = az.InferenceData(posterior=post, observed_data=self.data.to_dataset())
        return TwinResult(
            idata=idata, twin=self.twin, data=self.data, declaration_hash=self.twin.hash,
            data_hash=self.data.hash, diagnostics=None, ledger=self.ledger,
            info={"sampler": "smc_assimilation", "n_updates": len(self.reports)},
        )


def _concat_twin_data(a: Any, b: Any):
    from ..twin import TwinData

    return TwinData(
        x=np.vstack([a.x, b.x]), y=np.concatenate([a.y, b.y]),
        unit=None if a.unit is None else np.concatenate([a.unit, b.unit]),
        y_sd=None if a.y_sd is None else np.concatenate([a.y_sd, b.y_sd]),
        input_names=a.input_names,
    )


def assimilate(
    result: Any,
    new_data: Any,
    *,
    time_input: str | None = None,
    refit: Callable | str | None = "calibrate",
    n_particles: int | None = None,
    max_chunks: int = 8,
    gate: DataQualityGate | None = None,
    drift: CusumDetector | None = None,
    n_predictive: int = 1000,
    coverage_alpha: float = 0.05,
    new_units: bool = True,
    rng: RNGLike = None,
    **smc_options: Any,
) -> TwinAssimilation:
    """Update a calibrated twin with a new batch of data by SMC, without refitting if possible.

    Parameters
    ----------
    result : TwinResult or TwinAssimilation
        A calibration (its ``twin`` and ``data`` must be attached) or a previous assimilation.
    new_data : TwinData
        The new batch. Its input columns must match the calibration data, its units must be
        known to the twin, and with ``time_input`` its times must increase and follow the data
        already assimilated.
    time_input : str, optional
        Name of the input column holding time (checked for order).
    refit : "calibrate", callable or None
        Fallback on collapse: ``"calibrate"`` reruns :func:`vvuq_twin.calibrate` on all data;
        a callable ``(all_data_dict, rng) -> dict of arrays`` is used as is; ``None`` raises.
    n_particles : int, optional
        Thin the calibration draws to this many particles (default all draws).
    max_chunks : int
        The past data are kept as one chunk per batch (each likelihood compiled once); beyond
        this many chunks they are merged into one, so a move evaluates at most
        ``max_chunks + 1`` compiled functions.
    gate : DataQualityGate, optional
        Data-quality gate run on ``new_data.y`` against the current posterior predictive
        ``(mean, sd)`` at the new inputs. A refused batch raises nothing: the posterior, data
        and reports are returned unchanged, the batch is kept in ``rejected`` with the verdict's
        reasons, and a ledger entry (kind ``"assimilation"``, name ``"quality_gate"``,
        ``passed=False``) is recorded. An accepted batch records ``passed=True``.
    drift : CusumDetector, optional
        CUSUM run on the PIT values of accepted batches under the current posterior predictive,
        continuing the stream of earlier calls (``pit_history``). Records ledger entry
        ``"drift_cusum"`` (``passed`` = no alarm inside this batch). The update still runs.
    n_predictive : int
        Posterior-predictive draws used by the gate, the PIT and the coverage check.
    coverage_alpha : float
        With ``gate`` or ``drift`` given, the ledger entry ``"coverage_90"`` (central 90 %
        predictive interval of the new batch) passes when the exact binomial test of
        coverage = 0.9 has p-value >= ``coverage_alpha``.
    new_units : bool
        A hierarchical twin's batch may name units it has not seen: their per-unit parameters are
        drawn, for every particle, from the population given that particle's population
        parameters (the model's own conditional prior), appended to the unit coordinate, and then
        moved with the rest by the SMC update (the likelihood of every data chunk is recompiled
        for the larger model). ``False`` refuses such a batch.
    rng : Generator, int or None
    **smc_options
        Passed to :func:`~vvuq_twin.assimilation.smc_update`.

    Returns
    -------
    TwinAssimilation
        The input ``result`` is not modified. Without ``gate`` and ``drift`` no predictive is
        drawn and the update is exactly as before (same random stream).
    """
    from ..twin import TwinData

    g = as_generator(rng)
    if isinstance(result, TwinAssimilation):
        twin, old_data, density = result.twin, result.data, result.density
        particles, reports = result.particles, list(result.reports)
        chunks = list(result.chunks)
        ledger, rejected = Ledger(list(result.ledger.entries)), list(result.rejected)
        pit_history = np.asarray(result.pit_history, float)
    else:
        twin, old_data = getattr(result, "twin", None), getattr(result, "data", None)
        if twin is None or old_data is None:
            raise DataValidationError(
                "assimilate needs the twin and its calibration data attached to the result; load "
                "it with load_result(path, twin=twin, data=data)."
            )
        # new batches (and all data after the update) must use the calibration's HSGP basis
        twin = twin.with_frozen_discrepancy(old_data)
        from ..inference.results import full_posterior

        posterior = full_posterior(result.idata)  # with a latent GP's auxiliary variables
        units = None
        if twin.hierarchy is not None:
            if twin.hierarchy.units is not None:
                units = twin.hierarchy.units
            elif twin.hierarchy.dim in posterior.coords:
                units = tuple(str(u) for u in posterior[twin.hierarchy.dim].values)
            else:
                raise DataValidationError(
                    f"Twin {twin.name!r} is hierarchical but the posterior has no "
                    f"{twin.hierarchy.dim!r} coordinate naming the calibrated units; pass "
                    "Hierarchy(units=...) in the declaration."
                )
        density = TwinLogDensity(twin, units=units, input_names=list(old_data.input_names))
        reports = []
        particles = None
        chunks = [_data_dict(old_data)]
        prev = getattr(result, "ledger", None)
        ledger = Ledger(list(prev.entries) if prev is not None else [])
        rejected, pit_history = [], np.zeros(0)
    if not isinstance(new_data, TwinData):
        raise DataValidationError(
            f"`new_data` must be TwinData, got {type(new_data).__name__}. Build it with TwinData(x=..., y=...)."
        )
    if list(new_data.input_names) != list(old_data.input_names):
        raise DataValidationError(
            f"`new_data` has inputs {list(new_data.input_names)} but the twin was calibrated on "
            f"{list(old_data.input_names)}. Rename or reorder the columns."
        )
    if not np.all(np.isfinite(new_data.y)):
        raise DataValidationError(
            f"`new_data.y` has NaN at rows {np.flatnonzero(~np.isfinite(new_data.y))[:10].tolist()}; "
            "drop or impute them before assimilating."
        )
    if (old_data.unit is None) != (new_data.unit is None):
        raise DataValidationError("`new_data` must carry unit labels exactly when the calibration data do.")
    if time_input is not None:
        if time_input not in old_data.input_names:
            raise DataValidationError(f"`time_input` {time_input!r} is not an input (inputs: {old_data.input_names}).")
        j = list(old_data.input_names).index(time_input)
        # per unit when the data have units (each unit's series must move forward in time)
        u_new = np.zeros(new_data.n, dtype=int).astype(str) if new_data.unit is None else np.asarray(new_data.unit).astype(str)
        u_old = np.zeros(old_data.n, dtype=int).astype(str) if old_data.unit is None else np.asarray(old_data.unit).astype(str)
        for u in dict.fromkeys(u_new.tolist()):
            t_new = new_data.x[u_new == u, j]
            t_old = old_data.x[u_old == u, j]
            where = "" if new_data.unit is None else f" of unit {u!r}"
            bad = np.flatnonzero(np.diff(t_new) <= 0)
            if bad.size:
                raise DataValidationError(
                    f"`new_data` timestamps{where} are out of order: {time_input}={t_new[bad[0] + 1]} "
                    f"does not follow {t_new[bad[0]]}. Sort the batch by time."
                )
            if t_old.size and t_new[0] <= t_old.max():
                raise DataValidationError(
                    f"`new_data`{where} starts at {time_input}={t_new[0]}, not after the last "
                    f"assimilated time {t_old.max()}; only newer data can be assimilated."
                )
    new_d = _data_dict(new_data)
    if twin.hierarchy is not None:
        twin_units = density.twin.hierarchy.units
        unknown = sorted(set(new_d["unit"].tolist()) - set(twin_units or ()))
        if twin_units is not None and unknown and not new_units:
            raise DataValidationError(
                f"`new_data` names unit(s) {unknown[:10]} the twin does not know (known: "
                f"{list(twin_units)[:10]}). Pass new_units=True to draw their per-unit parameters "
                "from the population and assimilate them, or recalibrate."
            )
    density.prepare(chunks[0])
    added_units: list[str] = []
    if twin.hierarchy is not None and density.twin.hierarchy.units is not None:
        known = set(density.twin.hierarchy.units)
        added_units = [u for u in dict.fromkeys(new_d["unit"].tolist()) if u not in known]
    if particles is None:
        post = result.idata.posterior
        missing = [n for n in density.free_names if n not in post]
        if missing:
            raise DataValidationError(
                f"The posterior lacks the free variables {missing} of the twin's model; was it "
                "calibrated with this twin?"
            )
        values = {n: post[n].stack(particle=("chain", "draw")).transpose("particle", ...).values
                  for n in density.free_names}
        total = next(iter(values.values())).shape[0]
        if n_particles is not None and n_particles < total:
            idx = np.sort(g.choice(total, size=int(n_particles), replace=False))
            values = {k: v[idx] for k, v in values.items()}
        particles = ParticlePosterior(values)
        # the past log-likelihood through the value-only function compiled for compile speed
        # (a move compiles the chunk's value-and-gradient C function when it needs it; an update
        # that only reweights never does)
        ll0, _ = density.log_likelihood_z(density.to_unconstrained(particles.values), chunks[0], False)
        particles = ParticlePosterior(particles.values, None, ll0)
    if added_units:
        twin, density, particles = _add_units(twin, density, particles, chunks[0], added_units, g)

    vv: dict[str, Any] = {}
    if gate is not None or drift is not None:
        vv = _vv_checks(twin, old_data, particles, new_data, gate=gate, drift=drift,
                        ledger=ledger, pit_history=pit_history, n_predictive=n_predictive,
                        coverage_alpha=coverage_alpha, batch_index=len(reports) + len(rejected),
                        rng=g)
        if not vv["accepted"]:
            rejected.append(vv["rejected"])
            return TwinAssimilation(twin=twin, particles=particles, data=old_data, reports=reports,
                                    density=density, chunks=chunks, ledger=ledger,
                                    rejected=rejected, pit_history=pit_history)
        pit_history = vv["pit_history"]

    refit_fn = None
    if refit == "calibrate":
        def refit_fn(all_d, gen):
            from ..inference import calibrate

            n = particles.n_particles
            res = calibrate(twin, density.twin_data(all_d), draws=max(n // 2, 100), chains=2,
                            rng=seed_int(gen), posterior_predictive=False, warn=False)
            p = res.idata.posterior
            return {k: p[k].stack(particle=("chain", "draw")).transpose("particle", ...).values
                    for k in density.free_names}
    elif callable(refit):
        refit_fn = refit
    elif refit is not None:
        raise ValueError(f"`refit` must be 'calibrate', a callable or None, got {refit!r}.")

    if len(chunks) > max_chunks:
        # one merged chunk: compiled lazily, only if a move needs the past likelihood
        chunks = [concat_data(chunks)]
    new_particles, report = smc_update(
        particles, new_d, density, past_data=chunks,
        refit=refit_fn, batch_index=len(reports), rng=g, **smc_options,
    )
    return TwinAssimilation(twin=twin, particles=new_particles, data=_concat_twin_data(old_data, new_data),
                            reports=reports + [report], density=density, chunks=chunks + [new_d],
                            ledger=ledger, rejected=rejected, pit_history=pit_history)


def _add_units(twin: Any, density: TwinLogDensity, particles: ParticlePosterior,
               template: Mapping[str, np.ndarray], added: list[str], rng: np.random.Generator
               ) -> tuple[Any, TwinLogDensity, ParticlePosterior]:
    """Extend a hierarchical twin by ``added`` units: each particle's new per-unit values are
    drawn from the population conditional on its population parameters (PyMC forward sampling
    of the model's per-unit variables, given the other free variables)."""
    from pymc.sampling.forward import compile_forward_sampling_function

    old_units = tuple(density.twin.hierarchy.units)
    units = old_units + tuple(added)
    twin = twin_with_units(twin, units)
    new_density = TwinLogDensity(twin, units=units, input_names=density.input_names)
    new_density.prepare(template)
    model = twin.build_model(new_density.twin_data(template), check=False)
    dim = twin.hierarchy.dim
    dims = {rv.name: tuple(model.named_vars_to_dims.get(rv.name) or ()) for rv in model.free_RVs}
    per_unit = [rv for rv in model.free_RVs if dim in dims[rv.name]]
    others = [rv for rv in model.free_RVs if dim not in dims[rv.name]]
    if not per_unit:
        return twin, new_density, particles
    fn, _ = compile_forward_sampling_function(per_unit, vars_in_trace=others, basic_rvs=model.basic_RVs,
                                              random_seed=int(rng.integers(2**31 - 1)))
    n = particles.n_particles
    wanted = {v.name for v in fn.maker.fgraph.inputs if getattr(v, "name", None)}
    given = [rv.name for rv in others if rv.name in wanted]
    draws = {rv.name: [] for rv in per_unit}
    for i in range(n):
        out = fn(**{k: particles.values[k][i] for k in given})
        for rv, v in zip(per_unit, out):
            draws[rv.name].append(np.asarray(v, float))
    values = dict(particles.values)
    k0 = len(old_units)
    for rv in per_unit:
        axis = dims[rv.name].index(dim)
        new = np.stack(draws[rv.name])  # (n, ..., n_units_new, ...)
        sl = [slice(None)] * new.ndim
        sl[axis + 1] = slice(k0, None)
        values[rv.name] = np.concatenate([values[rv.name], new[tuple(sl)]], axis=axis + 1)
    # the stored cumulative log-likelihood is unchanged: the past data do not involve new units
    return twin, new_density, ParticlePosterior(values, particles.log_weights, particles.log_likelihood)


def _predictive_y(twin: Any, old_data: Any, particles: ParticlePosterior, new_data: Any,
                  n: int, rng: np.random.Generator) -> np.ndarray:
    """Posterior-predictive draws (n, n_obs) of ``y`` at the new inputs from the particles."""
    import arviz as az

    from ..inference.predict import predict

    vals = particles.resample(int(n), rng=rng)
    idata = az.from_dict(posterior={k: v[None] for k, v in vals.items()})
    shim = dataclasses.make_dataclass("_Current", ["idata", "twin", "data", "declaration_hash",
                                                   "data_hash"])(idata, twin, old_data, twin.hash,
                                                                 old_data.hash)
    unit = None if new_data.unit is None else list(np.asarray(new_data.unit).astype(str))
    pp = predict(shim, new_data.x, unit=unit, rng=seed_int(rng), domain=None)
    return pp["y"].stack(sample=("chain", "draw")).transpose("sample", "obs").values


def _vv_checks(twin: Any, old_data: Any, particles: ParticlePosterior, new_data: Any, *,
               gate: DataQualityGate | None, drift: CusumDetector | None, ledger: Ledger, pit_history: np.ndarray, n_predictive: int,
               coverage_alpha: float, batch_index: int, rng: np.random.Generator) -> dict[str, Any]:
    """Quality gate, then (if accepted) PIT -> CUSUM and 90 % coverage; ledger entries."""
    from ..validation.metrics import interval_coverage, pit

    if int(n_predictive) < 20:
        raise ValueError(f"`n_predictive` must be >= 20 for PIT and coverage, got {n_predictive}.")
    y = np.asarray(new_data.y, float)
    samples = _predictive_y(twin, old_data, particles, new_data, n_predictive, rng)
    mu, sd = samples.mean(axis=0), samples.std(axis=0)
    dhash = new_data.hash
    if gate is not None:
        verdict = gate.check(y, (mu, sd))
        ledger.record("assimilation", "quality_gate", twin=twin, data_hash=dhash,
                      passed=verdict.accepted,
                      result={"batch_index": batch_index, "reasons": list(verdict.reasons),
                              "n_obs": int(y.size)})
        if not verdict.accepted:
            return {"accepted": False,
                    "rejected": {"batch_index": batch_index, "data": new_data,
                                 "reasons": list(verdict.reasons), "verdict": verdict}}
    u = np.asarray(pit(samples, y), float)
    history = np.concatenate([pit_history, u])
    if drift is not None:
        ds = drift.run(history, kind="pit")
        alarm_new = ds["alarm"].values[pit_history.size:]
        stat = np.maximum(ds["s_upper"].values, ds["s_lower"].values)
        ledger.record("assimilation", "drift_cusum", twin=twin, data_hash=dhash,
                      passed=not bool(alarm_new.any()),
                      result={"batch_index": batch_index, "alarm": bool(alarm_new.any()),
                              "alarm_obs": np.flatnonzero(alarm_new).tolist(),
                              "s_upper": float(ds["s_upper"].values[-1]),
                              "s_lower": float(ds["s_lower"].values[-1]),
                              "max_statistic": float(stat[pit_history.size:].max()),
                              "h": drift.h, "k": drift.k, "stream_length": int(history.size)})
    cov = interval_coverage(samples, y, 0.9)
    ledger.record("assimilation", "coverage_90", twin=twin, data_hash=dhash,
                  passed=float(cov["p_value"]) >= coverage_alpha,
                  result={"batch_index": batch_index, "coverage": float(cov["coverage"]),
                          "nominal": 0.9, "n": int(cov["n"]), "p_value": float(cov["p_value"])})
    return {"accepted": True, "pit_history": history}
