"""Row counting of data chunks, shared by the tempered targets and the sufficient-statistic
reduction (a leaf module, so that neither imports the other)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

__all__: list[str] = []


def _n_rows(d: Mapping[str, np.ndarray]) -> int:
    """Number of rows (length of axis 0) of a data chunk; 0 for an empty mapping."""
    return int(np.asarray(next(iter(d.values()))).shape[0]) if d else 0
