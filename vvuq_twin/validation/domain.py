"""Validation domain (defined in :mod:`vvuq_twin.domain`, below inference; re-exported here)."""

from __future__ import annotations

from ..domain import ValidationDomain  # noqa: F401 - re-exported

__all__ = ["ValidationDomain"]
