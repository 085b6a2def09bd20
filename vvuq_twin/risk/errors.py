"""Exceptions of :mod:`vvuq_twin.risk` (defined in :mod:`vvuq_twin.exceptions`, re-exported here)."""

from __future__ import annotations

from ..exceptions import (  # noqa: F401 - re-exported
    RiskInputError,
    RareEventError,
    TailSampleWarning,
)

__all__ = [
    "RiskInputError",
    "RareEventError",
    "TailSampleWarning",
]
