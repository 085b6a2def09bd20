"""replicate: copy a calibrated twin, posterior included, into scenario worlds and run them."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import xarray as xr

from .._rng import RNGLike, seed_int
from ..exceptions import DataValidationError
from ..inference.predict import predict
from ..inference.results import TwinResult
from ..twin.declaration import Twin
from ._common import OperationError, param_signature, require_result
from .lineage import Lineage, attach_lineage

__all__ = ["Scenario", "replicate"]


@dataclass(frozen=True)
class Scenario:
    """Changed conditions of one scenario world.

    Parameters
    ----------
    x_new : array_like, optional
        Inputs (loads, forcing, schedule) of this world; default the ``x_new`` of
        :func:`replicate`.
    modify : callable, optional
        ``modify(twin) -> Twin``: a changed twin (e.g. a simulator with another physical
        constant, via ``dataclasses.replace(twin, simulator=...)``). It must keep the
        parameterisation, since the posterior draws are reused.
    unit : str, sequence of str or "new", optional
        Unit to predict for (hierarchical twins); default the ``unit`` of :func:`replicate`.
    """

    x_new: Any = None
    modify: Callable[[Twin], Twin] | None = None
    unit: str | Sequence[str] | None = None


def _as_scenario(name: str, spec: Any) -> Scenario:
    if spec is None:
        return Scenario()
    if isinstance(spec, Scenario):
        return spec
    if callable(spec):
        return Scenario(modify=spec)
    if isinstance(spec, Mapping):
        bad = sorted(set(spec) - {"x_new", "modify", "unit"})
        if bad:
            raise OperationError(
                f"replicate: scenario {name!r} has unknown keys {bad}; allowed keys are "
                "'x_new', 'modify', 'unit'."
            )
        return Scenario(**spec)
    raise OperationError(
        f"replicate: scenario {name!r} must be None (unchanged), a Scenario, a callable "
        f"twin -> twin, or a dict with 'x_new'/'modify'/'unit'; got {type(spec).__name__}."
    )


def replicate(
    result: TwinResult,
    scenarios: Mapping[str, Any],
    x_new: Any = None,
    *,
    unit: str | Sequence[str] | None = None,
    rng: RNGLike = None,
    include_y: bool = True,
) -> xr.Dataset:
    """Run the calibrated twin in several scenario worlds with the same posterior.

    Every world reuses the posterior draws of ``result`` and the same random seed (common
    random numbers), so differences between worlds come from the changed conditions only, and a
    world with unchanged conditions reproduces ``predict(result, x_new, rng=rng)`` exactly.

    Parameters
    ----------
    result : TwinResult
        The calibrated twin.
    scenarios : mapping of str to Scenario, callable, dict or None
        Name of each world -> its changed conditions (see :class:`Scenario`; a callable is
        ``modify``, ``None`` means unchanged).
    x_new : array_like, optional
        Default inputs of every world (shape (m,) or (m, d)).
    unit : str, sequence or "new", optional
        Default unit for hierarchical twins.
    rng : Generator, int or None
        Seed of the predictive draws; an int is passed to :func:`predict` unchanged.
    include_y : bool
        Also draw observations ``y``.

    Returns
    -------
    xarray.Dataset
        ``eta``, ``delta``, ``zeta`` (and ``y``) with dims (scenario, chain, draw, obs);
        ``x`` (scenario, obs, input) holds each world's inputs; ``declaration_hash`` per world;
        ``attrs["lineage"]`` the lineage JSON.
    """
    require_result(result, "replicate")
    if not isinstance(scenarios, Mapping) or not scenarios:
        raise OperationError(
            "replicate: `scenarios` must be a non-empty mapping name -> conditions, e.g. "
            "{'baseline': None, 'heavy_load': Scenario(x_new=...)}."
        )
    names = [str(k) for k in scenarios]
    if len(set(names)) != len(names):
        raise OperationError(f"replicate: scenario names must be unique, got {names}.")
    specs = {str(k): _as_scenario(str(k), v) for k, v in scenarios.items()}
    seed = int(rng) if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) else seed_int(rng)
    base_sig = param_signature(result.twin)
    worlds: list[tuple[str, TwinResult, Any, Any]] = []
    # validate every world before running any (nothing is computed for a bad request)
    for name, sc in specs.items():
        twin = result.twin
        if sc.modify is not None:
            twin = sc.modify(result.twin)
            if not isinstance(twin, Twin):
                raise OperationError(
                    f"replicate: scenario {name!r}: `modify` must return a Twin, got "
                    f"{type(twin).__name__}. Use dataclasses.replace(twin, simulator=...)."
                )
            if param_signature(twin) != base_sig:
                raise OperationError(
                    f"replicate: scenario {name!r} changes the parameterisation "
                    f"({twin.parameter_names} vs {result.twin.parameter_names}, or their priors); "
                    "the posterior draws cannot be reused. Change conditions (inputs, simulator "
                    "constants), not parameters - or recalibrate."
                )
            twin.check(result.data)
        xs = sc.x_new if sc.x_new is not None else x_new
        if xs is None:
            raise OperationError(
                f"replicate: scenario {name!r} has no inputs; pass x_new= to replicate or "
                "Scenario(x_new=...)."
            )
        world = dataclasses.replace(result, twin=twin, declaration_hash=twin.hash)
        worlds.append((name, world, xs, sc.unit if sc.unit is not None else unit))
    outs = []
    m0 = None
    for name, world, xs, u in worlds:
        pred = predict(world, xs, unit=u, rng=seed, include_y=include_y)
        m = pred.sizes["obs"]
        if m0 is None:
            m0 = m
        elif m != m0:
            raise DataValidationError(
                f"replicate: scenario {name!r} has {m} input rows but the first has {m0}; all "
                "worlds must be evaluated at the same number of points."
            )
        input_names = list(world.data.input_names)
        X = np.column_stack([pred[c].values for c in input_names])
        pred = pred.drop_vars([c for c in input_names + ["unit_label"] if c in pred.coords])
        pred["x"] = (("obs", "input"), X)
        pred["declaration_hash"] = ((), world.twin.hash)
        pred.attrs = {}
        outs.append(pred.assign_coords(obs=np.arange(m)))
    ds = xr.concat(outs, dim=xr.DataArray(names, dims="scenario", name="scenario"))
    ds = ds.assign_coords(input=list(result.data.input_names))
    ds.attrs.update({"seed": seed, "data_hash": result.data_hash,
                     "source_declaration_hash": result.declaration_hash})
    lin = Lineage()
    rid = lin.add_result(result)
    for name, world, _, _ in worlds:
        inputs = [rid]
        if world.twin.hash != result.twin.hash:
            inputs.append(lin.add_twin(world.twin))
        x_hash = hashlib.sha256(np.ascontiguousarray(ds["x"].sel(scenario=name).values).tobytes()).hexdigest()
        lin.add_output("replicate", name, inputs, seed=seed, declaration_hash=world.twin.hash,
                       inputs_hash=x_hash)
    return attach_lineage(ds, lin)
