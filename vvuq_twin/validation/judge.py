"""Validation judgements that can fail: coverage and median bias against bands a miscalibrated
twin would leave, PIT uniformity, and NOT INFORMATIVE when the hold-out is too small.

A validation gate whose band cannot be left is no gate. Each check here returns its band and
says whether the band is *informative*: whether a twin that is wrong by a stated amount (its
intervals cover ``level - deficit`` instead of ``level``; or ``0.5 + shift`` of the hold-out
points lie above its predictive medians) would leave it. When it would not, the status is
``"NOT INFORMATIVE"``, never ``"PASS"``.

Two bands are offered:

* ``"binomial"``: hold-out points independent given the twin (exact binomial quantiles);
* ``"predictive"``: the band of the statistic under the twin's own *joint* predictive: each
  posterior-predictive replicate of the hold-out is scored against the predictive as the
  observations are. Rows of one unit or one time series are correlated; the binomial band is
  then too narrow and raises false alarms, the predictive band is not.

With ``band="auto"`` the predictive band is used when at least 200 joint draws are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

from .._rng import RNGLike, as_generator
from ._errors import MetricInputError

__all__ = ["BandCheck", "PredictiveJudgement", "coverage_test", "median_bias_test",
           "judge_predictive", "PASS", "FAIL", "NOT_INFORMATIVE"]

PASS = "PASS"
FAIL = "FAIL"
NOT_INFORMATIVE = "NOT INFORMATIVE"


@dataclass(frozen=True)
class BandCheck:
    """A statistic of the hold-out judged against the band it has under a calibrated twin.

    Attributes
    ----------
    name : str
        ``"coverage"`` or ``"median_bias"``.
    value : float
        The statistic on the observations (fraction inside the intervals, or fraction above
        the predictive medians).
    band : (float, float)
        Central ``1 - alpha`` band of the statistic under a calibrated twin.
    nominal : float
        Its value for a calibrated twin (``level``, or 0.5).
    alternative : (float, ...)
        The wrong values the band must be able to reject to be informative.
    informative : bool
        Whether every alternative lies outside the band.
    status : str
        ``"PASS"``, ``"FAIL"`` or ``"NOT INFORMATIVE"``.
    n : int
        Number of hold-out points.
    method : str
        ``"binomial"`` or ``"predictive"``.
    note : str
        One sentence on what the status means.
    """

    name: str
    value: float
    band: tuple[float, float]
    nominal: float
    alternative: tuple[float, ...]
    informative: bool
    status: str
    n: int
    method: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {"name": self.name, "value": float(self.value), "band": [float(b) for b in self.band],
                "nominal": float(self.nominal), "alternative": [float(a) for a in self.alternative],
                "informative": bool(self.informative), "status": self.status, "n": int(self.n),
                "method": self.method, "note": self.note}


@dataclass(frozen=True)
class PredictiveJudgement:
    """Coverage, median bias and PIT uniformity of a hold-out, with one overall status.

    The overall status is ``"FAIL"`` when any check fails, else ``"NOT INFORMATIVE"`` when any
    check cannot discriminate, else ``"PASS"``: a PASS requires both coverage and bias (and,
    with at least 5 points, PIT uniformity) to pass.
    """

    coverage: BandCheck
    bias: BandCheck
    uniformity: dict[str, Any]
    status: str
    pit: np.ndarray = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (PIT values omitted)."""
        return {"status": self.status, "coverage": self.coverage.to_dict(),
                "median_bias": self.bias.to_dict(), "pit_uniformity": dict(self.uniformity)}


def _prepare(y_obs: Any, draws: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_obs, dtype=float).ravel()
    d = np.asarray(draws, dtype=float)
    if d.ndim == 1:
        d = d[:, None]
    if d.ndim != 2 or d.shape[1] != y.size:
        raise MetricInputError(
            f"judge: `draws` must have shape (n_draws, n_points) = (S, {y.size}) to match "
            f"`y_obs`, got {d.shape}. Stack chain and draw first (e.g. "
            "`da.stack(s=('chain', 'draw')).transpose('s', 'obs')`)."
        )
    if y.size == 0:
        raise MetricInputError("judge: no hold-out points were given.")
    if not np.all(np.isfinite(y)):
        raise MetricInputError("judge: `y_obs` contains NaN or inf; drop missing points first.")
    if not np.all(np.isfinite(d)):
        bad = int((~np.isfinite(d)).any(axis=1).sum())
        raise MetricInputError(
            f"judge: {bad} of {d.shape[0]} predictive draws contain NaN or inf: the predictive is "
            "broken (an unstable simulator?) and cannot be scored. Fix the simulator or the "
            "posterior before validating."
        )
    if d.shape[0] < 20:
        raise MetricInputError(f"judge: need at least 20 predictive draws, got {d.shape[0]}.")
    return y, d


def _method(band: str, n_draws: int) -> str:
    if band not in ("auto", "binomial", "predictive"):
        raise MetricInputError(f"judge: band must be 'auto', 'binomial' or 'predictive', got {band!r}.")
    if band == "auto":
        return "predictive" if n_draws >= 200 else "binomial"
    return band


def _check_probs(level: float, alpha: float) -> None:
    if not 0.0 < level < 1.0:
        raise MetricInputError(f"judge: level must lie in (0, 1), got {level}.")
    if not 0.0 < alpha < 0.5:
        raise MetricInputError(f"judge: alpha must lie in (0, 0.5), got {alpha}.")


def _replicates(d: np.ndarray, n_replicates: int, rng: RNGLike) -> np.ndarray:
    g = as_generator(rng)
    r = min(int(n_replicates), d.shape[0])
    return g.choice(d.shape[0], size=r, replace=False)


def _band_from(values: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2], method="inverted_cdf")
    return float(lo), float(hi)


def _status(value: float, band: tuple[float, float], informative: bool) -> str:
    if not informative:
        return NOT_INFORMATIVE
    return PASS if band[0] <= value <= band[1] else FAIL


def coverage_test(
    y_obs: Any,
    draws: Any,
    *,
    level: float = 0.9,
    alpha: float = 0.05,
    deficit: float = 0.2,
    band: Literal["auto", "binomial", "predictive"] = "auto",
    n_replicates: int = 500,
    rng: RNGLike = 0,
) -> BandCheck:
    """Coverage of central ``level`` predictive intervals, judged against its band.

    Parameters
    ----------
    y_obs : array_like, shape (n,)
        Hold-out observations.
    draws : array_like, shape (S, n)
        Joint posterior-predictive draws of the observations (noise included).
    level : float
        Nominal level of the central intervals.
    alpha : float
        The band holds the coverage of a calibrated twin with probability ``>= 1 - alpha``.
    deficit : float
        The band is informative only when a twin whose intervals cover ``level - deficit``
        lies below it (default 0.2: a nominal 90 % interval that covers 70 % must be caught).
    band : {"auto", "binomial", "predictive"}
        See the module docstring.
    n_replicates : int
        Predictive replicates used for the predictive band.
    rng : Generator, int or None
        Seed of the choice of replicates.

    Returns
    -------
    BandCheck
    """
    _check_probs(level, alpha)
    y, d = _prepare(y_obs, draws)
    n = y.size
    lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2], axis=0)
    value = float(np.mean((y >= lo) & (y <= hi)))
    method = _method(band, d.shape[0])
    if method == "binomial":
        b = (float(stats.binom.ppf(alpha / 2, n, level)) / n, float(stats.binom.ppf(1 - alpha / 2, n, level)) / n)
    else:
        idx = _replicates(d, n_replicates, rng)
        reps = d[idx]
        cov = np.mean((reps >= lo) & (reps <= hi), axis=1)
        b = _band_from(cov, alpha)
    alt = level - deficit
    informative = bool(b[0] > alt)
    st = _status(value, b, informative)
    if st == NOT_INFORMATIVE:
        note = (f"With {n} hold-out points a twin whose {level:.0%} intervals cover only {alt:.0%} "
                f"would still lie inside the band [{b[0]:.3g}, {b[1]:.3g}]: hold out more data.")
    elif st == FAIL:
        note = (f"Coverage {value:.3g} lies outside [{b[0]:.3g}, {b[1]:.3g}]: the twin's intervals "
                + ("are too narrow (over-confident)." if value < b[0] else "are too wide."))
    else:
        note = f"Coverage {value:.3g} lies inside [{b[0]:.3g}, {b[1]:.3g}]."
    return BandCheck("coverage", value, b, level, (alt,), informative, st, n, method, note)


def median_bias_test(
    y_obs: Any,
    draws: Any,
    *,
    alpha: float = 0.05,
    shift: float = 0.25,
    band: Literal["auto", "binomial", "predictive"] = "auto",
    n_replicates: int = 500,
    rng: RNGLike = 0,
) -> BandCheck:
    """Fraction of hold-out points above their predictive median, judged against its band.

    A calibrated twin puts half of the points above its medians. ``shift`` sets the bias the
    band must be able to detect: it is informative only when ``0.5 - shift`` and
    ``0.5 + shift`` both lie outside it (default 0.25: 75 % of the points on one side).
    Other parameters as in :func:`coverage_test`.
    """
    _check_probs(0.5, alpha)
    y, d = _prepare(y_obs, draws)
    n = y.size
    med = np.median(d, axis=0)
    value = float(np.mean(y > med))
    method = _method(band, d.shape[0])
    if method == "binomial":
        b = (float(stats.binom.ppf(alpha / 2, n, 0.5)) / n, float(stats.binom.ppf(1 - alpha / 2, n, 0.5)) / n)
    else:
        idx = _replicates(d, n_replicates, rng)
        frac = np.mean(d[idx] > med, axis=1)
        b = _band_from(frac, alpha)
    alts = (0.5 - shift, 0.5 + shift)
    informative = bool(b[0] > alts[0] and b[1] < alts[1])
    st = _status(value, b, informative)
    if st == NOT_INFORMATIVE:
        note = (f"With {n} hold-out points even {alts[1]:.0%} of points on one side of the "
                f"predictive median would lie inside [{b[0]:.3g}, {b[1]:.3g}]: hold out more data.")
    elif st == FAIL:
        note = (f"{value:.0%} of the hold-out points lie above the predictive median, outside "
                f"[{b[0]:.3g}, {b[1]:.3g}]: the predictive is biased "
                + ("low." if value > b[1] else "high."))
    else:
        note = f"{value:.0%} above the predictive median, inside [{b[0]:.3g}, {b[1]:.3g}]."
    return BandCheck("median_bias", value, b, 0.5, alts, informative, st, n, method, note)


def _ks_statistic(u: np.ndarray) -> np.ndarray:
    """Kolmogorov–Smirnov distance of each row of ``u`` (R, n) from the uniform on (0, 1)."""
    u = np.sort(u, axis=-1)
    n = u.shape[-1]
    i = np.arange(1, n + 1)
    return np.maximum((i / n - u).max(axis=-1), (u - (i - 1) / n).max(axis=-1))


def _replicate_pit(d: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """PIT values (R, n) of the replicates ``d[idx]``, each against the other S - 1 draws."""
    ds = np.sort(d, axis=0)
    out = np.empty((idx.size, d.shape[1]))
    for j in range(d.shape[1]):
        v = d[idx, j]
        lo = np.searchsorted(ds[:, j], v, side="left")
        hi = np.searchsorted(ds[:, j], v, side="right")
        out[:, j] = (lo + 0.5 * (hi - lo - 1)) / (d.shape[0] - 1)   # the replicate itself left out
    return out


def _uniformity(pit: np.ndarray, d: np.ndarray, *, alpha: float, method: str, rng: int,
                n_replicates: int = 500) -> dict[str, Any]:
    n = int(pit.size)
    if n < 5:
        return {"method": "ks", "statistic": float("nan"), "p_value": float("nan"),
                "p_value_independent": float("nan"), "status": NOT_INFORMATIVE, "n": n}
    ks = stats.kstest(pit, "uniform")
    out = {"method": "ks", "statistic": float(ks.statistic), "p_value": float(ks.pvalue),
           "p_value_independent": float(ks.pvalue), "n": n}
    if method == "predictive":
        idx = _replicates(d, n_replicates, rng)
        d_rep = _ks_statistic(_replicate_pit(d, idx))
        p = float((1 + np.sum(d_rep >= ks.statistic - 1e-12)) / (1 + d_rep.size))
        out.update(method="ks-predictive", p_value=p, n_replicates=int(d_rep.size),
                   reference_quantile=float(np.quantile(d_rep, 1 - alpha)))
    out["status"] = PASS if out["p_value"] >= alpha else FAIL
    return out


def judge_predictive(
    y_obs: Any,
    draws: Any,
    *,
    level: float = 0.9,
    alpha: float = 0.05,
    deficit: float = 0.2,
    shift: float = 0.25,
    band: Literal["auto", "binomial", "predictive"] = "auto",
    rng: RNGLike = 0,
) -> PredictiveJudgement:
    """Judge a hold-out: coverage, median bias and PIT uniformity, one overall status.

    PIT uniformity is judged by the Kolmogorov–Smirnov statistic of the hold-out's PIT values at
    level ``alpha`` (with fewer than 5 points it is skipped and counts as not informative). Its
    reference distribution follows ``band`` as the other two checks do:

    * ``"binomial"`` (independent points): the classical KS p-value (``method="ks"``);
    * ``"predictive"``: the distribution of the same statistic when a replicate of the hold-out
      drawn from the twin's own *joint* predictive is scored as the observations are (its PIT
      values computed against the other draws), ``method="ks-predictive"``, with the Monte
      Carlo p-value ``(1 + #{D_rep >= D_obs}) / (1 + R)``. Points that share a unit, a time
      series or one posterior are correlated; their PIT values are then not independent and
      the classical KS test rejects a calibrated twin far more often than ``alpha``. The
      classical p-value is kept as ``p_value_independent``.

    Parameters as in :func:`coverage_test` and :func:`median_bias_test`.
    """
    y, d = _prepare(y_obs, draws)
    g = as_generator(rng)
    s1, s2 = (int(s) for s in g.integers(0, 2**31 - 1, size=2))
    cov = coverage_test(y, d, level=level, alpha=alpha, deficit=deficit, band=band, rng=s1)
    bias = median_bias_test(y, d, alpha=alpha, shift=shift, band=band, rng=s2)
    pit = (np.sum(d < y, axis=0) + 0.5 * np.sum(d == y, axis=0)) / d.shape[0]
    uni = _uniformity(pit, d, alpha=alpha, method=_method(band, d.shape[0]), rng=int(g.integers(0, 2**31 - 1)))
    states = (cov.status, bias.status, uni["status"])
    overall = FAIL if FAIL in states else (NOT_INFORMATIVE if NOT_INFORMATIVE in states else PASS)
    return PredictiveJudgement(cov, bias, uni, overall, pit)
