"""Prediction points of a model build (shared by the declaration and the reserved-name probe)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PredictSpec"]


@dataclass
class PredictSpec:
    """New points at which the model also computes eta, delta, zeta, y (suffix ``_new``)."""

    X: np.ndarray
    unit_idx: np.ndarray | None = None
    new_unit: bool = False
