"""Typed step results of the VVUQ loop, their statuses and the gate errors.

Every step returns a :class:`StepResult` with a :class:`Status` and the reason for it. A step
that consumes the output of a step that failed its gate either refuses to run
(:class:`GateError`, the default) or, when the loop was started with ``on_fail="flag"``, runs
and is marked *provisional*: every number it reports is then written as
``{"value": v, "status": "PROVISIONAL"}`` in the JSON summary, shown with a PROVISIONAL badge
in the HTML report, and recorded with ``provisional: true`` in the ledger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

import numpy as np

from ..exceptions import DiagnosticsGateError, GateError, ValidationGateError

__all__ = ["Status", "StepResult", "GateError", "DiagnosticsGateError", "ValidationGateError",
           "PROVISIONAL", "mark_provisional", "jsonable"]

#: Marker attached to every number derived from a failed gate (``on_fail="flag"``).
PROVISIONAL = "PROVISIONAL"


class Status(str, Enum):
    """Outcome of a loop step."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    NOT_APPLICABLE = "NOT APPLICABLE"
    NOT_INFORMATIVE = "NOT INFORMATIVE"
    #: the step computes figures without a pass/fail criterion (e.g. sensitivity, a decision)
    RECORD = "RECORD"

    def __str__(self) -> str:  # "PASS", not "Status.PASS"
        return self.value


def jsonable(obj: Any) -> Any:
    """Plain JSON types from numpy/xarray scalars, arrays, tuples, enums (NaN -> None)."""
    if isinstance(obj, Status):
        return obj.value
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.str_):
        return str(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return jsonable(obj.to_dict())
    if obj is None or isinstance(obj, (str, int)):
        return obj
    return str(obj)


def mark_provisional(obj: Any) -> Any:
    """Wrap every number (not bool) of a JSON-ready structure as ``{"value": v, "status": "PROVISIONAL"}``."""
    if isinstance(obj, dict):
        return {k: mark_provisional(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [mark_provisional(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (int, float)):
        return {"value": obj, "status": PROVISIONAL}
    return obj


@dataclass
class StepResult:
    """The typed result of one loop step.

    Attributes
    ----------
    step : str
        Name of the step (unique in the loop).
    kind : str
        Ledger kind: ``"verification"``, ``"calibration"``, ``"validation"``,
        ``"sensitivity"``, ``"decision"``, ``"design"``, ``"assimilation"``, ``"operation"``.
    status : Status
    reason : str
        Why this status (one or two sentences a reader can act on).
    values : dict
        The step's figures (JSON-ready).
    inputs : tuple of str
        The steps whose outputs this step consumed.
    provisional : tuple of str
        Why the figures are provisional (empty when they are not).
    consumed_by : list of str
        Steps that consumed this step's output (filled by the loop); a step whose output
        nothing consumes is labelled "reported only".
    duration_s : float
        Wall time (volatile: kept out of the comparable part of the summary).
    """

    step: str
    kind: str
    status: Status
    reason: str
    values: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    provisional: tuple[str, ...] = ()
    consumed_by: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def is_provisional(self) -> bool:
        """Whether the step's figures derive from a failed gate."""
        return bool(self.provisional)

    @property
    def reported_only(self) -> bool:
        """True when no later step consumed this step's output."""
        return not self.consumed_by

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary without volatile fields; provisional numbers are marked."""
        vals = jsonable(self.values)
        if self.is_provisional:
            vals = mark_provisional(vals)
        return {
            "step": self.step,
            "kind": self.kind,
            "status": self.status.value,
            "reason": self.reason,
            "provisional": list(self.provisional),
            "inputs": list(self.inputs),
            "consumed_by": list(self.consumed_by),
            "reported_only": self.reported_only,
            "values": vals,
        }

    def to_record(self) -> dict[str, Any]:
        """Everything needed to restore the result (unmarked values + duration)."""
        d = self.to_dict()
        d["values"] = jsonable(self.values)
        d["duration_s"] = float(self.duration_s)
        return d

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> "StepResult":
        """Inverse of :meth:`to_record`."""
        return cls(step=d["step"], kind=d["kind"], status=Status(d["status"]), reason=d["reason"],
                   values=dict(d["values"]), inputs=tuple(d["inputs"]),
                   provisional=tuple(d["provisional"]), consumed_by=list(d.get("consumed_by", [])),
                   duration_s=float(d.get("duration_s", 0.0)))
