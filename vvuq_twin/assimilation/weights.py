"""Importance-weight utilities shared by the particle filter and the SMC update (NumPy only)."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

__all__ = ["normalize_log_weights", "effective_sample_size", "systematic_resample"]


def normalize_log_weights(log_w: np.ndarray) -> np.ndarray:
    """Log weights shifted so that ``exp`` of them sums to one (``-inf`` entries stay ``-inf``)."""
    log_w = np.asarray(log_w, dtype=float)
    total = logsumexp(log_w)
    if not np.isfinite(total):
        raise FloatingPointError(
            "All importance weights are zero or non-finite: the new data have zero likelihood "
            "under every particle (check the data and the likelihood)."
        )
    return log_w - total


def effective_sample_size(log_w: np.ndarray) -> float:
    """Kish effective sample size ``1 / sum(w_i^2)`` of (unnormalised) log weights."""
    lw = normalize_log_weights(log_w)
    return float(np.exp(-logsumexp(2.0 * lw)))


def systematic_resample(log_w: np.ndarray, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Indices of a systematic resample (one uniform draw, ``n`` evenly spaced pointers).

    Parameters
    ----------
    log_w : array (N,)
        Unnormalised log weights.
    rng : Generator
        Source of the single uniform offset.
    n : int, optional
        Number of indices to draw (default N).
    """
    w = np.exp(normalize_log_weights(log_w))
    n = w.size if n is None else int(n)
    cdf = np.cumsum(w)
    cdf[-1] = 1.0
    u = (rng.random() + np.arange(n)) / n
    return np.searchsorted(cdf, u, side="right").clip(0, w.size - 1)
