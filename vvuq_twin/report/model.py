"""The report's data model: the VVUQ summary fields and :class:`Metric` (no rendering).

:mod:`vvuq_twin.report.report` (the :class:`~vvuq_twin.report.Report` container and its files)
and :mod:`vvuq_twin.report._html` (HTML rendering) both build on this module; neither imports
the other's internals back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..exceptions import ReportError

__all__ = ["SUMMARY_FIELDS", "Metric"]

#: The rows of the VVUQ summary table, in order, with their labels.
SUMMARY_FIELDS: dict[str, str] = {
    "assumptions": "Assumptions",
    "data_provenance": "Data provenance",
    "verification": "Verification status",
    "validation": "Validation metrics",
    "diagnostics": "Sampler diagnostics",
    "sensitivity": "Sensitivity ranking",
    "risk": "Risk figures",
    "decision": "Recommended decision",
    "next_measurement": "Next measurement",
    "software": "Software, seed and commit",
}


@dataclass(frozen=True)
class Metric:
    """A number checked against a threshold (validation metric, diagnostic, verification check).

    Parameters
    ----------
    name : str
        What is measured (e.g. ``"90% interval coverage (hold-out)"``).
    value : float
        The measured value.
    threshold : float or (float, float), optional
        The acceptance threshold; a pair for ``comparison="within"``. Without a threshold the
        metric is reported without pass/fail.
    comparison : {"<=", "<", ">=", ">", "within"}
        How ``value`` must relate to ``threshold`` to pass.
    unit : str
        Unit shown after the value.
    note : str
        Short explanation shown with the metric.
    """

    name: str
    value: float
    threshold: float | tuple[float, float] | None = None
    comparison: Literal["<=", "<", ">=", ">", "within"] = "<="
    unit: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.comparison not in ("<=", "<", ">=", ">", "within"):
            raise ReportError(
                f"Metric {self.name!r}: comparison must be one of '<=', '<', '>=', '>', 'within', "
                f"got {self.comparison!r}."
            )
        if self.comparison == "within" and self.threshold is not None:
            th = self.threshold
            if not (isinstance(th, (tuple, list)) and len(th) == 2 and th[0] <= th[1]):
                raise ReportError(
                    f"Metric {self.name!r}: comparison 'within' needs threshold=(low, high) with "
                    f"low <= high, got {th!r}."
                )

    @property
    def passed(self) -> bool | None:
        """True/False against the threshold; None without a threshold; False for NaN values."""
        if self.threshold is None:
            return None
        v = float(self.value)
        if not math.isfinite(v):
            return False
        if self.comparison == "within":
            lo, hi = self.threshold  # type: ignore[misc]
            return bool(lo <= v <= hi)
        th = float(self.threshold)  # type: ignore[arg-type]
        return bool({"<=": v <= th, "<": v < th, ">=": v >= th, ">": v > th}[self.comparison])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary, including ``passed``."""
        th = self.threshold
        return {
            "name": self.name,
            "value": _num(self.value),
            "threshold": list(map(_num, th)) if isinstance(th, (tuple, list)) else _num(th),
            "comparison": self.comparison,
            "unit": self.unit,
            "note": self.note,
            "passed": self.passed,
        }


def _num(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    f = float(v)
    return f if math.isfinite(f) else str(f)
