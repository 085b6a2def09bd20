"""Known-answer risk problems, reused by tests, the validation suite and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["LinearLimitState"]


@dataclass(frozen=True)
class LinearLimitState:
    """Linear limit state in standard-normal space: ``g(u) = beta - a.u / |a|``.

    Failure is ``g <= 0``; for ``U ~ N(0, I)`` the exact failure probability is
    ``Phi(-beta)`` (``beta = 4.265`` gives about 1e-5) and the design point is
    ``beta a / |a|``. Instances are picklable, so they run in process pools.

    Parameters
    ----------
    beta : float
        Reliability index.
    dim : int
        Dimension of the standard-normal space.
    """

    beta: float = 4.265
    dim: int = 2

    @property
    def direction(self) -> np.ndarray:
        """Unit normal ``a / |a|`` of the limit-state hyperplane (equal weights)."""
        return np.full(self.dim, 1.0 / np.sqrt(self.dim))

    @property
    def pf_exact(self) -> float:
        """Exact failure probability ``Phi(-beta)``."""
        return float(stats.norm.cdf(-self.beta))

    def __call__(self, u: np.ndarray) -> float:
        """Evaluate ``g`` at one point ``u`` (shape ``(dim,)``)."""
        return float(self.beta - np.dot(self.direction, np.asarray(u, dtype=float)))

    def vectorized(self, U: np.ndarray) -> np.ndarray:
        """Evaluate ``g`` on rows of ``U`` at once (for plain Monte Carlo at large budgets)."""
        return self.beta - np.asarray(U, dtype=float) @ self.direction
