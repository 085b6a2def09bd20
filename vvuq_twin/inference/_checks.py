"""Argument checks of :func:`~vvuq_twin.calibrate` and :func:`~vvuq_twin.predict`.

They run first, before any model is built or compiled, so a typo (``draws=1.5``,
``chains="4"``, ``rng=-1``) costs nothing and the message says what to pass instead.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["check_calibrate_args", "check_predict_args"]


def _whole(name: str, v: Any, minimum: int, fn: str) -> None:
    ok = (isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))) or (
        isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer())
    if not ok:
        raise ValueError(f"{fn}: `{name}` must be a whole number >= {minimum}, got {v!r} "
                         f"({type(v).__name__}).")
    if int(v) < minimum:
        raise ValueError(f"{fn}: `{name}` must be >= {minimum}, got {v!r}.")


def _flag(name: str, v: Any, fn: str) -> None:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{fn}: `{name}` must be True or False, got {v!r}.")


def _rng(v: Any, fn: str) -> None:
    if v is None or isinstance(v, (np.random.Generator, np.random.SeedSequence)):
        return
    if isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_)):
        if int(v) < 0:
            raise ValueError(f"{fn}: `rng` seed must be >= 0, got {v}.")
        return
    raise TypeError(f"{fn}: `rng` must be None, a non-negative int seed, a "
                    f"numpy.random.Generator or SeedSequence; got {v!r} ({type(v).__name__}).")


def check_calibrate_args(twin: Any, data: Any, *, method: Any, draws: Any, tune: Any,
                         chains: Any, rng: Any, target_accept: Any, progressbar: Any,
                         posterior_predictive: Any, cores: Any, thresholds: Any, warn: Any,
                         ledger: Any) -> None:
    """Validate every argument of ``calibrate`` (raises ValueError/TypeError/DataValidationError)."""
    from ..exceptions import DataValidationError, TwinSpecificationError
    from ..twin.data import TwinData
    from ..twin.declaration import Twin
    from .diagnostics import Thresholds
    from .ledger import Ledger

    fn = "calibrate"
    if not isinstance(twin, Twin):
        raise TwinSpecificationError(f"{fn}: `twin` must be a Twin, got {type(twin).__name__}.")
    if not isinstance(data, TwinData):
        raise DataValidationError(f"{fn}: `data` must be a TwinData, got {type(data).__name__}. "
                                  "Build it with TwinData(x=..., y=...).")
    valid = ("auto", "nuts", "nutpie", "pymc", "smc")
    if method not in valid:
        raise ValueError(f"{fn}: `method` must be one of {valid}, got {method!r}.")
    _whole("draws", draws, 1, fn)
    _whole("tune", tune, 0, fn)
    _whole("chains", chains, 1, fn)
    if cores is not None:
        _whole("cores", cores, 1, fn)
    if target_accept is not None:
        if isinstance(target_accept, bool) or not isinstance(target_accept, (numbers.Real, np.floating)) \
                or not 0.0 < float(target_accept) < 1.0:
            raise ValueError(f"{fn}: `target_accept` must be a number in (0, 1), got {target_accept!r}.")
    _rng(rng, fn)
    if progressbar is not None:  # None: the default progress display (vvuq_twin.progress)
        _flag("progressbar", progressbar, fn)
    for name, v in (("posterior_predictive", posterior_predictive), ("warn", warn)):
        _flag(name, v, fn)
    if thresholds is not None and not isinstance(thresholds, Thresholds):
        raise TypeError(f"{fn}: `thresholds` must be a Thresholds, got {type(thresholds).__name__}.")
    if ledger is not None and not isinstance(ledger, Ledger):
        raise TypeError(f"{fn}: `ledger` must be a Ledger, got {type(ledger).__name__}.")


def check_predict_args(result: Any, *, unit: Any, rng: Any, include_y: Any) -> None:
    """Validate the arguments of ``predict`` that its body does not check before building."""
    from ..exceptions import DataValidationError

    fn = "predict"
    if not all(hasattr(result, a) for a in ("idata", "twin", "data", "declaration_hash")):
        raise DataValidationError(f"{fn}: `result` must be a TwinResult (from calibrate or "
                                  f"load_result), got {type(result).__name__}.")
    _rng(rng, fn)
    _flag("include_y", include_y, fn)
    if unit is not None and not isinstance(unit, str):
        labels = list(np.atleast_1d(np.asarray(unit, dtype=object)))
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in labels):
            raise DataValidationError(f"{fn}: `unit` labels must not be None or NaN, got {unit!r}.")
