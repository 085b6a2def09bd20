"""exchange: swap one component of a calibrated twin and find the V&V entries it makes stale."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..exceptions import SimulatorError, VVUQError
from ..inference.ledger import Entry, Ledger
from ..inference.results import TwinResult
from ..twin.data import TwinData
from ..twin.declaration import Twin
from ..twin.discrepancy import Discrepancy
from ..twin.observation import ObservationModel
from ..twin.simulators import Simulator
from ._common import OperationError, require_result
from .lineage import Lineage

__all__ = ["ExchangeResult", "exchange", "COMPONENTS"]

#: components that can be exchanged
COMPONENTS = ("simulator", "discrepancy", "observation", "data")

_TYPES = {"simulator": Simulator, "discrepancy": Discrepancy, "observation": ObservationModel}


@dataclass
class ExchangeResult:
    """The outcome of :func:`exchange`; the original result is left unchanged.

    Attributes
    ----------
    twin : Twin
        The twin with the new component.
    data : TwinData
        The data (changed when ``component="data"``).
    component : str
        What was exchanged.
    stale : list of Entry
        Ledger entries of the original result that no longer apply.
    rerun : list of str
        Names of the checks to re-run (``"<kind>/<name>"``), sorted.
    status : list of dict
        ``Ledger.status`` rows of the new ledger under the new twin and data.
    ledger : Ledger
        A copy of the result's ledger with an ``operation/exchange`` record appended.
    lineage : Lineage
    """

    twin: Twin
    data: TwinData
    component: str
    stale: list[Entry]
    rerun: list[str]
    status: list[dict[str, Any]]
    ledger: Ledger
    lineage: Lineage = field(default_factory=Lineage)

    @property
    def needs_recalibration(self) -> bool:
        """Whether the calibration itself is stale (its posterior was computed on the old twin)."""
        return any(e.kind == "calibration" for e in self.stale)


def _component_from(new: Any, component: str) -> Any:
    if isinstance(new, TwinResult):
        new = new.twin if component != "data" else new.data
    if isinstance(new, Twin) and component != "data":
        return getattr(new, component)
    return new


def _replace_unit_data(data: TwinData, new: TwinData, unit: str | None) -> TwinData:
    if new.x.shape[1] != data.x.shape[1] or list(new.input_names) != list(data.input_names):
        raise OperationError(
            f"exchange(component='data'): the new data have inputs {list(new.input_names)} "
            f"({new.x.shape[1]} column(s)) but the twin was calibrated on {list(data.input_names)}; "
            "inputs must have the same columns."
        )
    if unit is None:
        if data.unit is not None and new.unit is None:
            raise OperationError(
                "exchange(component='data'): the twin is hierarchical; give the new data unit "
                "labels, or pass unit=... to replace one unit's rows."
            )
        return new
    if data.unit is None:
        raise OperationError(
            f"exchange(component='data', unit={unit!r}): the calibration data have no unit labels; "
            "replace the whole data set (unit=None) instead."
        )
    if unit not in data.units:
        raise OperationError(
            f"exchange(component='data'): unit {unit!r} is not in the data (units: "
            f"{list(data.units)[:10]})."
        )
    keep = data.unit != unit
    nu = np.full(new.n, unit) if new.unit is None else new.unit
    if np.any(nu != unit):
        raise OperationError(
            f"exchange(component='data', unit={unit!r}): the new rows are labelled "
            f"{sorted(set(nu.tolist()))}; they must all belong to unit {unit!r}."
        )
    old_obs = [o for o, k in zip(data.obs, keep) if k]
    new_obs = [f"{unit}/new/{o}" for o in new.obs]
    ysd = None
    if data.y_sd is not None or new.y_sd is not None:
        ysd = np.concatenate([data.y_sd[keep] if data.y_sd is not None else np.zeros(keep.sum()),
                              new.y_sd if new.y_sd is not None else np.zeros(new.n)])
    return TwinData(
        x=np.vstack([data.x[keep], new.x]), y=np.concatenate([data.y[keep], new.y]),
        unit=np.concatenate([data.unit[keep], nu]), y_sd=ysd, input_names=data.input_names,
        obs=old_obs + new_obs, missing="mask" if "mask" in (data.missing, new.missing) else "raise",
    )


def exchange(
    result: TwinResult,
    *,
    component: Literal["simulator", "discrepancy", "observation", "data"],
    new: Any,
    unit: str | None = None,
) -> ExchangeResult:
    """Swap one component of a calibrated twin (possibly taken from another twin).

    The new twin is validated against the data - the simulator is run once at the prior
    reference values and must return one finite value per input row - before anything is
    returned; the original result (its twin, data, posterior and ledger) is never modified.

    Parameters
    ----------
    result : TwinResult
    component : {"simulator", "discrepancy", "observation", "data"}
    new : component, Twin, TwinResult or TwinData
        The replacement. A Twin or TwinResult gives its own component of that kind (exchange
        between twins).
    unit : str, optional
        With ``component="data"``: replace only this unit's rows.

    Returns
    -------
    ExchangeResult
        New twin/data, the stale ledger entries and the checks to re-run.

    Raises
    ------
    OperationError
        Unknown component, wrong type, incompatible shape/dims or parameter set.
    """
    require_result(result, "exchange")
    if component not in COMPONENTS:
        raise OperationError(
            f"exchange: component must be one of {COMPONENTS}, got {component!r}."
        )
    twin, data = result.twin, result.data
    new = _component_from(new, component)
    if component == "data":
        if not isinstance(new, TwinData):
            raise OperationError(
                f"exchange(component='data'): `new` must be TwinData, got {type(new).__name__}."
            )
        new_twin, new_data = twin, _replace_unit_data(data, new, unit)
    else:
        if unit is not None:
            raise OperationError("exchange: `unit` applies to component='data' only.")
        kind = _TYPES[component]
        if not isinstance(new, kind):
            raise OperationError(
                f"exchange(component={component!r}): `new` must be a {kind.__name__} (or a Twin / "
                f"TwinResult holding one), got {type(new).__name__}."
            )
        new_twin = dataclasses.replace(twin, **{component: new})
        new_data = data
    try:
        new_twin.check(new_data)
    except (SimulatorError, VVUQError, KeyError) as exc:
        raise OperationError(
            f"exchange(component={component!r}) rejected, nothing changed: the new twin is not "
            f"compatible with the data/parameters of {twin.name!r} "
            f"(parameters {twin.parameter_names}, {data.n} rows x {data.x.shape[1]} input(s)): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    stale = result.ledger.stale(new_twin, new_data.hash)
    rerun = sorted(f"{e.kind}/{e.name}" for e in stale)
    led = Ledger.from_json(result.ledger.to_json())
    status = led.status(new_twin, new_data.hash)
    lin = Lineage()
    rid = lin.add_result(result)
    inputs = [rid]
    if component == "data":
        inputs.append(lin.add_data(new_data, f"{twin.name}.data(exchanged)"))
    else:
        h = new_twin.component_hashes()[component]
        inputs.append(lin.add_node("component", f"new.{component}", h, component=component))
    tid = lin.add_twin(new_twin)
    oid = lin.add_output("exchange", f"{twin.name}:{component}", inputs, component=component,
                         unit=unit, rerun=rerun)
    lin.add_edge(oid, tid, "exchange")
    led.record("operation", f"exchange_{component}", twin=new_twin, data_hash=new_data.hash,
               passed=None, result={"from_declaration": twin.hash, "from_data": data.hash,
                                    "rerun": rerun})
    return ExchangeResult(twin=new_twin, data=new_data, component=component, stale=stale,
                          rerun=rerun, status=status, ledger=led, lineage=lin)
