"""Names the model builder creates, derived from the builder itself (not a hand-kept list).

:func:`check_parameter_names` builds the twin's PyMC model - for calibration, for the
posterior-predictive form and for prediction at new inputs and a new unit - on a three-row probe
data set with a stand-in simulator (the real simulator is not run; the builder's names do not
depend on it). A parameter whose name the builder also creates (``sigma_rel``, ``nu_obs``,
``y_observed``, ``eta_new``, ``<name>_mu`` beside a per-unit ``<name>``, a discrepancy
hyperparameter ...) then fails at declaration with a :class:`TwinSpecificationError` naming the
clash, instead of PyMC's "Variable name already exists" when the model is first built.
"""

from __future__ import annotations

import contextvars
import dataclasses
import re
from typing import Any

import numpy as np
import pytensor.tensor as pt

from ..exceptions import TwinSpecificationError
from ._spec import PredictSpec
from .simulators import Simulator

__all__ = ["builder_names", "check_parameter_names"]

_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("vvuq_twin_probing", default=False)
_CACHE: dict[str, frozenset[str]] = {}
_CLASH = re.compile(r"Variable name (\S+) already exists")


@dataclasses.dataclass
class _ProbeSimulator(Simulator):
    """Stand-in simulator of the probe build: zeros, one per input row."""

    name: str = "probe"

    def __call__(self, x, params):
        return pt.zeros((x.shape[0],))

    def spec(self) -> dict[str, Any]:
        return {"kind": "probe"}


def _probe_data(twin: Any):
    from .data import TwinData

    cols = getattr(twin.discrepancy, "columns", None)
    d = 1 + (max(int(c) for c in cols) if cols else 0)
    n = 4
    x = np.column_stack([np.linspace(0.1, 1.0, n) + j for j in range(d)])
    unit = None
    if twin.hierarchy is not None:
        units = list(twin.hierarchy.units or ("u0", "u1"))
        unit = [units[i % len(units)] for i in range(n)]
    return TwinData(x=x, y=np.linspace(0.5, 1.5, n), unit=unit)


def _build_all(twin: Any) -> set[str]:
    probe = dataclasses.replace(twin, simulator=_ProbeSimulator())
    data = _probe_data(probe)
    names: set[str] = set()
    unit_idx = None if probe.hierarchy is None else np.zeros(2, dtype=int)
    variants: list[dict[str, Any]] = [
        {},
        {"predict_at": PredictSpec(X=data.x[:2], unit_idx=unit_idx)},
    ]
    if probe.per_unit_names:
        variants.append({"predict_at": PredictSpec(X=data.x[:2], new_unit=True)})
    if probe.marginal_discrepancy():
        variants.append({"conditional_roles": True})
    for kw in variants:
        model = probe.build_model(data, check=False, **kw)
        names.update(map(str, model.named_vars))
    return names


def builder_names(twin: Any) -> frozenset[str]:
    """Every variable name the model builder creates for ``twin`` besides its parameters."""
    key = twin.hash
    if key not in _CACHE:
        token = _PROBING.set(True)
        try:
            names = _build_all(twin)
        finally:
            _PROBING.reset(token)
        _CACHE[key] = frozenset(names - set(twin.parameter_names))
    return _CACHE[key]


def _names_without(twin: Any, clash: str) -> set[str]:
    """Builder names of ``twin`` with the clashing parameter renamed away (for the message)."""
    renamed = [dataclasses.replace(p, name=f"{p.name}__clash") if p.name == clash else p
               for p in twin.parameters]
    token = _PROBING.set(True)
    try:
        other = dataclasses.replace(twin, parameters=renamed)
        return _build_all(other) - set(other.parameter_names)
    except Exception:  # noqa: BLE001 - the list is only a hint
        return set()
    finally:
        _PROBING.reset(token)


def check_parameter_names(twin: Any) -> None:
    """Raise :class:`TwinSpecificationError` when a parameter name clashes with a builder name.

    Called by ``Twin.__post_init__``. A probe build that fails for another reason is ignored
    here (the real build and ``Twin.check`` report it with the real data).
    """
    if _PROBING.get():
        return
    try:
        builder_names(twin)
    except ValueError as exc:
        m = _CLASH.search(str(exc))
        if m is None:
            return
        name = m.group(1)
        derived = {f"{q.name}{suf}": q.name for q in twin.parameters if q.per_unit
                   for suf in ("_mu", "_sigma", "_z", "_lin", "_z_new", "_new")}
        if name in derived:
            why = (f"the builder also creates {name!r} for per-unit parameter "
                   f"{derived[name]!r} (its population location/scale/offsets)")
        else:
            why = ("the model builder creates a variable of that name for this twin's "
                   "observation model, discrepancy or role variables")
        raise TwinSpecificationError(
            f"Twin {twin.name!r}: parameter name {name!r} is reserved: {why}. Rename the "
            f"parameter. Names the builder creates for this twin: "
            f"{sorted(_names_without(twin, name))}."
        ) from exc
    except Exception:  # noqa: BLE001 - not a name clash; the real build reports it
        return
    clash = sorted(set(twin.parameter_names) & builder_names(twin))
    if clash:  # pragma: no cover - PyMC raises on the duplicate first
        raise TwinSpecificationError(
            f"Twin {twin.name!r}: parameter name(s) {clash} are created by the model builder; "
            "rename them.")
