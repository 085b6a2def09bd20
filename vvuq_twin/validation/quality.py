"""Data-quality gate: refuse to assimilate data that look corrupt, and say why.

"Cutting the feedback loop": a digital twin that assimilates a stuck sensor, an impossible value
or a sudden calibration offset learns the fault and then steers the physical system by it. The
:class:`DataQualityGate` checks a batch of observations before assimilation and returns a
:class:`QualityVerdict` listing every reason for refusal, with per-observation flags. It never
drops or edits data: the caller decides (and :meth:`QualityVerdict.raise_if_rejected` raises
:class:`~vvuq_twin.validation.DataQualityError` with the reasons).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ._errors import DataQualityError, MetricInputError

__all__ = ["DataQualityGate", "QualityVerdict"]


@dataclass(frozen=True)
class QualityVerdict:
    """Outcome of :meth:`DataQualityGate.check`.

    Attributes
    ----------
    accepted : bool
        True when no check failed.
    reasons : list of str
        One human-readable sentence per failed check (empty when accepted).
    flags : xarray.Dataset
        Boolean flags per observation (dim ``obs``): ``non_finite``, ``out_of_bounds``,
        ``stuck``, ``offset``, and ``z`` (standardised residual, NaN without a predictive).
    """

    accepted: bool
    reasons: list[str] = field(default_factory=list)
    flags: xr.Dataset = field(default_factory=xr.Dataset)

    def __bool__(self) -> bool:
        return self.accepted

    def raise_if_rejected(self) -> None:
        """Raise :class:`DataQualityError` listing the reasons when the data were refused."""
        if not self.accepted:
            raise DataQualityError(
                "Data refused by the quality gate (not assimilated):\n- "
                + "\n- ".join(self.reasons)
            )

    def summary(self) -> str:
        """One line: ACCEPTED, or REFUSED with the reasons."""
        if self.accepted:
            return f"ACCEPTED ({self.flags.sizes.get('obs', 0)} observations)"
        return "REFUSED: " + "; ".join(self.reasons)


def _runs(values: np.ndarray, tol: float) -> list[tuple[int, int]]:
    """(start, length) of maximal runs of (near-)identical consecutive finite values."""
    out = []
    start = 0
    for i in range(1, values.size + 1):
        same = (i < values.size and np.isfinite(values[i]) and np.isfinite(values[i - 1])
                and abs(values[i] - values[i - 1]) <= tol)
        if not same:
            out.append((start, i - start))
            start = i
    return out


def _fmt_idx(idx: np.ndarray) -> str:
    s = ", ".join(str(int(i)) for i in idx[:8])
    return s + (", ..." if idx.size > 8 else "")


class DataQualityGate:
    """Checks a batch of observations (a 1-D time-ordered stream) before assimilation.

    Parameters
    ----------
    lower, upper : float, optional
        Physical bounds (e.g. 0 for a concentration); values outside are impossible.
    max_run : int
        Longest allowed run of identical consecutive values; a longer run is a stuck sensor.
    run_tol : float
        Two consecutive values within ``run_tol`` count as identical.
    offset_z : float
        Threshold on ``|mean(z over window)| * sqrt(window)`` of standardised residuals against
        the predictive: a sudden offset (z-test on the window mean).
    offset_window : int
        Window length of the offset test (1 = single-point outlier test).
    """

    def __init__(self, *, lower: float | None = None, upper: float | None = None,
                 max_run: int = 5, run_tol: float = 0.0, offset_z: float = 5.0,
                 offset_window: int = 5) -> None:
        if lower is not None and upper is not None and not lower < upper:
            raise MetricInputError(
                f"DataQualityGate: need lower < upper, got lower={lower}, upper={upper}."
            )
        if int(max_run) < 1:
            raise MetricInputError(f"DataQualityGate: max_run must be >= 1, got {max_run}.")
        if int(offset_window) < 1 or offset_z <= 0 or run_tol < 0:
            raise MetricInputError(
                "DataQualityGate: need offset_window >= 1, offset_z > 0 and run_tol >= 0; got "
                f"offset_window={offset_window}, offset_z={offset_z}, run_tol={run_tol}."
            )
        self.lower, self.upper = lower, upper
        self.max_run, self.run_tol = int(max_run), float(run_tol)
        self.offset_z, self.offset_window = float(offset_z), int(offset_window)

    def check(self, y: Any, predictive: Any = None, *,
              sample_dims: tuple[str, ...] = ("chain", "draw")) -> QualityVerdict:
        """Check observations ``y``.

        Parameters
        ----------
        y : array (n,) or DataArray
            New observations, in time order.
        predictive : optional
            The twin's predictive for ``y``: a tuple ``(mean, sd)`` of arrays (n,), an array of
            samples ``(n_samples, n)``, or a DataArray with ``sample_dims``. Enables the
            sudden-offset check.
        sample_dims : tuple of str
            Sample dims of a DataArray predictive.

        Returns
        -------
        QualityVerdict
        """
        vals = np.asarray(y.values if isinstance(y, xr.DataArray) else y, dtype=float)
        if vals.ndim != 1:
            raise MetricInputError(
                f"DataQualityGate.check: y must be 1-D (one time-ordered stream), got shape "
                f"{vals.shape}."
            )
        n = vals.size
        reasons: list[str] = []
        finite = np.isfinite(vals)
        non_finite = ~finite
        if non_finite.any():
            idx = np.flatnonzero(non_finite)
            reasons.append(f"{idx.size} NaN/inf value(s) at index {_fmt_idx(idx)}")
        oob = np.zeros(n, dtype=bool)
        if self.lower is not None:
            low = finite & (vals < self.lower)
            if low.any():
                idx = np.flatnonzero(low)
                reasons.append(
                    f"{idx.size} impossible value(s) below the physical lower bound "
                    f"{self.lower} at index {_fmt_idx(idx)} (min {vals[low].min():.6g})"
                )
            oob |= low
        if self.upper is not None:
            high = finite & (vals > self.upper)
            if high.any():
                idx = np.flatnonzero(high)
                reasons.append(
                    f"{idx.size} impossible value(s) above the physical upper bound "
                    f"{self.upper} at index {_fmt_idx(idx)} (max {vals[high].max():.6g})"
                )
            oob |= high
        stuck = np.zeros(n, dtype=bool)
        for start, length in _runs(vals, self.run_tol):
            if length > self.max_run:
                stuck[start:start + length] = True
                reasons.append(
                    f"stuck sensor: {length} identical consecutive values ({vals[start]:.6g}) "
                    f"at index {start}-{start + length - 1} (at most {self.max_run} allowed)"
                )
        z = np.full(n, np.nan)
        offset = np.zeros(n, dtype=bool)
        if predictive is not None:
            mu, sd = self._moments(predictive, n, sample_dims)
            z = (vals - mu) / sd
            w = min(self.offset_window, n)
            zz = np.where(np.isfinite(z), z, 0.0)
            csum = np.concatenate([[0.0], np.cumsum(zz)])
            stat = (csum[w:] - csum[:-w]) / np.sqrt(w)  # sum(z)/sqrt(w) = mean*sqrt(w)
            hits = np.flatnonzero(np.abs(stat) > self.offset_z)
            for s in hits:
                offset[s:s + w] = True
            if hits.size:
                s = int(hits[np.argmax(np.abs(stat[hits]))])
                reasons.append(
                    f"sudden offset against the predictive: window of {w} observation(s) at index "
                    f"{s}-{s + w - 1} has mean standardised residual {stat[s] / np.sqrt(w):+.3g} "
                    f"(test statistic {abs(stat[s]):.3g} > {self.offset_z}); first flagged index "
                    f"{int(np.flatnonzero(offset)[0])}"
                )
        flags = xr.Dataset(
            {"y": ("obs", vals), "non_finite": ("obs", non_finite),
             "out_of_bounds": ("obs", oob), "stuck": ("obs", stuck),
             "offset": ("obs", offset), "z": ("obs", z)},
            coords={"obs": (y["obs"].values if isinstance(y, xr.DataArray) and "obs" in y.coords
                            else np.arange(n))},
        )
        return QualityVerdict(accepted=not reasons, reasons=reasons, flags=flags)

    @staticmethod
    def _moments(predictive: Any, n: int, sample_dims: tuple[str, ...]
                 ) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(predictive, tuple) and len(predictive) == 2:
            mu0 = np.asarray(predictive[0], dtype=float)
            sd0 = np.asarray(predictive[1], dtype=float)
            for arr in (mu0, sd0):
                if arr.size not in (1, n):
                    raise MetricInputError(
                        f"DataQualityGate.check: predictive describes {arr.size} observations, "
                        f"y has {n}."
                    )
            mu = np.broadcast_to(mu0.ravel() if mu0.size == n else mu0.reshape(()), (n,))
            sd = np.broadcast_to(sd0.ravel() if sd0.size == n else sd0.reshape(()), (n,))
        else:
            if isinstance(predictive, xr.DataArray):
                missing = [d for d in sample_dims if d not in predictive.dims]
                if missing:
                    raise MetricInputError(
                        f"DataQualityGate.check: sample dim(s) {missing} not in predictive dims "
                        f"{predictive.dims}."
                    )
                mu = predictive.mean(dim=list(sample_dims)).values
                sd = predictive.std(dim=list(sample_dims)).values
            else:
                arr = np.asarray(predictive, dtype=float)
                if arr.ndim != 2:
                    raise MetricInputError(
                        "DataQualityGate.check: predictive must be (mean, sd), samples "
                        f"(n_samples, n) or a DataArray; got an array of shape {arr.shape}."
                    )
                mu, sd = arr.mean(axis=0), arr.std(axis=0)
            mu, sd = np.ravel(mu), np.ravel(sd)
        if mu.shape != (n,) or sd.shape != (n,):
            raise MetricInputError(
                f"DataQualityGate.check: predictive describes {mu.size} observations, y has {n}."
            )
        if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sd)) and np.all(sd > 0)):
            raise MetricInputError(
                "DataQualityGate.check: predictive mean/sd must be finite with sd > 0."
            )
        return mu, sd
