"""Drift detection on a stream of PIT values or standardised residuals (two-sided CUSUM).

If a twin stays valid, the PIT values ``u_t`` of new observations under its predictive are
uniform, so ``z_t = Phi^{-1}(u_t)`` (or the standardised residuals) are i.i.d. N(0, 1). Page's
CUSUM

    S+_t = max(0, S+_{t-1} + z_t - k),   S-_t = max(0, S-_{t-1} - z_t - k)

raises an alarm when either exceeds ``h``. The threshold ``h`` is set for a stated per-stream
false-alarm probability over a horizon of ``T`` observations, calibrated by simulating
in-control N(0, 1) streams with a seed (:func:`calibrate_cusum`): ``h`` is the ``1 - alpha``
quantile of ``max_t max(S+_t, S-_t)``. :func:`simulate_performance` reports the realised
false-alarm rate (with its binomial standard error) and the mean detection delay of a step
change, on fresh streams.

Reference: Page (1954), "Continuous inspection schemes", Biometrika 41:100-115.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr
from scipy import stats

from .._rng import RNGLike, as_generator
from ._errors import MetricInputError

__all__ = ["CusumDetector", "calibrate_cusum", "simulate_performance", "pit_to_z"]


def pit_to_z(pit_values: Any, eps: float = 1e-12) -> np.ndarray:
    """Normal scores ``Phi^{-1}(u)`` of PIT values (clipped to ``[eps, 1 - eps]``)."""
    u = np.asarray(pit_values.values if isinstance(pit_values, xr.DataArray) else pit_values,
                   dtype=float)
    if not np.all(np.isfinite(u)):
        raise MetricInputError("pit_to_z: PIT values contain NaN/inf.")
    if np.any((u < 0) | (u > 1)):
        raise MetricInputError(
            f"pit_to_z: PIT values must lie in [0, 1], got range [{u.min():.3g}, {u.max():.3g}]."
            " Pass kind='residual' for standardised residuals."
        )
    return stats.norm.ppf(np.clip(u, eps, 1 - eps))


def _cusum_max_and_first(z: np.ndarray, k: float, h: float | None,
                         two_sided: bool) -> tuple[np.ndarray, np.ndarray]:
    """For streams ``z`` (n, T): running max of the statistic and first crossing index (-1)."""
    n, T = z.shape
    sp = np.zeros(n)
    sm = np.zeros(n)
    run_max = np.zeros(n)
    first = np.full(n, -1, dtype=int)
    for t in range(T):
        sp = np.maximum(0.0, sp + z[:, t] - k)
        stat = sp
        if two_sided:
            sm = np.maximum(0.0, sm - z[:, t] - k)
            stat = np.maximum(sp, sm)
        run_max = np.maximum(run_max, stat)
        if h is not None:
            newly = (first < 0) & (stat > h)
            first[newly] = t
    return run_max, first


@dataclass(frozen=True)
class CusumDetector:
    """A calibrated two-sided (or upper) CUSUM on N(0, 1)-scaled scores.

    Attributes
    ----------
    k : float
        Reference value (half the shift, in standard deviations, the chart is tuned to detect).
    h : float
        Decision threshold.
    two_sided : bool
        Detect shifts in both directions.
    false_alarm : float
        Per-stream false-alarm probability over ``horizon`` the threshold was calibrated for.
    horizon : int
        Stream length used in calibration.
    n_sim : int
        Number of simulated in-control streams used in calibration.
    seed : int or None
        Seed of the calibration (None if not reproducible).
    """

    k: float
    h: float
    two_sided: bool = True
    false_alarm: float = float("nan")
    horizon: int = 0
    n_sim: int = 0
    seed: int | None = None

    def run(self, values: Any, *, kind: Literal["pit", "residual"] = "pit") -> xr.Dataset:
        """Run the CUSUM over one stream.

        Parameters
        ----------
        values : array (T,) or DataArray
            PIT values (``kind="pit"``) or standardised residuals (``kind="residual"``).
        kind : {"pit", "residual"}

        Returns
        -------
        xarray.Dataset
            Over dim ``time``: ``z``, ``s_upper``, ``s_lower``, ``alarm``; attrs
            ``drift_detected`` and ``alarm_time`` (first index above ``h``, -1 if none).
        """
        if kind == "pit":
            z = pit_to_z(values)
        elif kind == "residual":
            z = np.asarray(values.values if isinstance(values, xr.DataArray) else values,
                           dtype=float)
            if not np.all(np.isfinite(z)):
                raise MetricInputError("CusumDetector.run: residuals contain NaN/inf.")
        else:
            raise MetricInputError(
                f"CusumDetector.run: kind must be 'pit' or 'residual', got {kind!r}."
            )
        z = np.ravel(z)
        sp = np.zeros(z.size)
        sm = np.zeros(z.size)
        a, b = 0.0, 0.0
        for t, zt in enumerate(z):
            a = max(0.0, a + zt - self.k)
            b = max(0.0, b - zt - self.k) if self.two_sided else 0.0
            sp[t], sm[t] = a, b
        alarm = np.maximum(sp, sm) > self.h
        first = int(np.argmax(alarm)) if alarm.any() else -1
        ds = xr.Dataset(
            {"z": ("time", z), "s_upper": ("time", sp), "s_lower": ("time", sm),
             "alarm": ("time", alarm)},
            coords={"time": np.arange(z.size)},
        )
        ds.attrs.update({f"detector_{k}": (int(v) if isinstance(v, bool) else v)
                         for k, v in asdict(self).items() if v is not None})
        ds.attrs["drift_detected"] = int(alarm.any())
        ds.attrs["alarm_time"] = first
        return ds


def calibrate_cusum(
    *,
    horizon: int,
    false_alarm: float = 0.05,
    k: float = 0.5,
    two_sided: bool = True,
    n_sim: int = 20000,
    rng: RNGLike = None,
) -> CusumDetector:
    """Set the CUSUM threshold for a per-stream false-alarm probability over ``horizon``.

    Simulates ``n_sim`` in-control streams of i.i.d. N(0, 1) scores and takes the
    ``1 - false_alarm`` quantile of the stream maximum of the CUSUM statistic.

    Parameters
    ----------
    horizon : int
        Number of observations per monitoring period.
    false_alarm : float
        Wanted probability of at least one alarm in ``horizon`` steps when nothing drifts.
    k : float
        Reference value (0.5 tunes the chart to a one-standard-deviation shift).
    two_sided : bool
    n_sim : int
        Simulated streams (the quantile's Monte Carlo error shrinks as ``1/sqrt(n_sim)``).
    rng : Generator, int or None

    Returns
    -------
    CusumDetector
    """
    if int(horizon) < 1:
        raise MetricInputError(f"calibrate_cusum: horizon must be >= 1, got {horizon}.")
    if not 0.0 < false_alarm < 1.0:
        raise MetricInputError(
            f"calibrate_cusum: false_alarm must be in (0, 1), got {false_alarm}."
        )
    if n_sim * false_alarm < 20:
        raise MetricInputError(
            f"calibrate_cusum: n_sim={n_sim} gives only {n_sim * false_alarm:.0f} simulated "
            f"false alarms at false_alarm={false_alarm}; use n_sim >= {int(np.ceil(20 / false_alarm))}"
            " for a stable threshold."
        )
    if k < 0:
        raise MetricInputError(f"calibrate_cusum: k must be >= 0, got {k}.")
    seed = int(rng) if isinstance(rng, (int, np.integer)) else None
    gen = as_generator(rng)
    maxima = np.empty(n_sim)
    chunk = 5000
    for start in range(0, n_sim, chunk):
        m = min(chunk, n_sim - start)
        z = gen.standard_normal((m, int(horizon)))
        maxima[start:start + m], _ = _cusum_max_and_first(z, k, None, two_sided)
    h = float(np.quantile(maxima, 1.0 - false_alarm, method="higher"))
    return CusumDetector(k=float(k), h=h, two_sided=two_sided, false_alarm=float(false_alarm),
                         horizon=int(horizon), n_sim=int(n_sim), seed=seed)


def simulate_performance(
    detector: CusumDetector,
    *,
    shift: float = 1.0,
    change_point: int | None = None,
    horizon: int | None = None,
    n_streams: int = 500,
    rng: RNGLike = None,
) -> xr.Dataset:
    """False-alarm rate and detection delay of ``detector`` on fresh simulated streams.

    ``n_streams`` in-control streams give the false-alarm rate; ``n_streams`` streams with a
    step of ``shift`` standard deviations at ``change_point`` give the detection rate and the
    mean delay (alarm time minus change point, among streams that alarm at or after the change).

    Returns
    -------
    xarray.Dataset
        Scalars ``false_alarm_rate``, ``false_alarm_se`` (binomial standard error at the nominal
        level), ``nominal_false_alarm``, ``detection_rate`` (among shifted streams with no alarm before
        the change), ``mean_delay``, ``median_delay``,
        ``early_alarm_rate`` (alarms before the change on shifted streams); attrs with the
        settings.
    """
    T = int(horizon if horizon is not None else detector.horizon)
    if T < 2:
        raise MetricInputError("simulate_performance: need horizon >= 2 (pass `horizon=`).")
    cp = int(change_point if change_point is not None else T // 2)
    if not 0 <= cp < T:
        raise MetricInputError(
            f"simulate_performance: change_point must be in [0, {T}), got {cp}."
        )
    if n_streams < 1:
        raise MetricInputError("simulate_performance: n_streams must be >= 1.")
    gen = as_generator(rng)
    z0 = gen.standard_normal((n_streams, T))
    _, first0 = _cusum_max_and_first(z0, detector.k, detector.h, detector.two_sided)
    far = float(np.mean(first0 >= 0))
    z1 = gen.standard_normal((n_streams, T))
    z1[:, cp:] += shift
    _, first1 = _cusum_max_and_first(z1, detector.k, detector.h, detector.two_sided)
    early = (first1 >= 0) & (first1 < cp)
    detected = first1 >= cp
    delays = first1[detected] - cp
    alpha = detector.false_alarm
    ds = xr.Dataset({
        "false_alarm_rate": ((), far),
        "false_alarm_se": ((), float(np.sqrt(alpha * (1 - alpha) / n_streams))
                           if np.isfinite(alpha) else float("nan")),
        "nominal_false_alarm": ((), alpha),
        "detection_rate": ((), float(detected.sum() / max(1, (~early).sum()))),
        "mean_delay": ((), float(delays.mean()) if delays.size else float("nan")),
        "median_delay": ((), float(np.median(delays)) if delays.size else float("nan")),
        "early_alarm_rate": ((), float(np.mean(early))),
    })
    ds.attrs.update(shift=float(shift), change_point=cp, horizon=T, n_streams=int(n_streams),
                    k=detector.k, h=detector.h)
    return ds
