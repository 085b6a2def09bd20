"""One door for simulator ensembles: serial, local processes, or a Dask cluster.

Sensitivity designs, surrogate training sets, Monte Carlo for risk, EIG estimation and scenario
worlds all evaluate a model through :func:`evaluate`. It accepts any
:class:`concurrent.futures.Executor` (``None`` means serial, in-process), for example a
:class:`concurrent.futures.ProcessPoolExecutor` or ``dask.distributed.Client(...).get_executor()``.
Results come back in input order, so the same inputs give the same outputs whatever the executor.
A failed run is retried ``retries`` times and then either recorded with its inputs (the default)
or raised; it is never dropped silently.
"""

from __future__ import annotations

import time
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np

from .exceptions import EnsembleError

__all__ = ["EnsembleResult", "FailedRun", "evaluate"]


@dataclass(frozen=True)
class FailedRun:
    """A run that failed after all retries: its row index, inputs and the error it raised."""

    index: int
    inputs: np.ndarray
    error: str


@dataclass
class EnsembleResult:
    """Outputs of an ensemble, in input order.

    Attributes
    ----------
    outputs : ndarray, shape (n_runs, ...) (run axis first, then the output shape)
        Model outputs; rows of failed runs are NaN.
    failures : list of FailedRun
        Every run that failed, with its inputs and error.
    n_runs : int
        Number of model evaluations attempted (including retries).
    wall_time : float
        Seconds spent in :func:`evaluate`.
    """

    outputs: np.ndarray
    failures: list[FailedRun] = field(default_factory=list)
    n_runs: int = 0
    wall_time: float = 0.0

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of rows that succeeded."""
        mask = np.ones(self.outputs.shape[0], dtype=bool)
        for f in self.failures:
            mask[f.index] = False
        return mask


def _run_chunk(fn: Callable[[np.ndarray], Any], rows: np.ndarray, start: int, retries: int):
    out = []
    attempts = 0
    for i, x in enumerate(rows):
        last_err = ""
        for _ in range(retries + 1):
            attempts += 1
            try:
                y = np.asarray(fn(x), dtype=float)
                out.append((start + i, y, None))
                break
            except Exception as exc:  # noqa: BLE001 - recorded with its inputs, never dropped
                last_err = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        else:
            out.append((start + i, None, last_err))
    return out, attempts


def evaluate(
    fn: Callable[[np.ndarray], Any],
    inputs: np.ndarray | Sequence[Sequence[float]],
    *,
    executor: Executor | None = None,
    chunk_size: int | None = None,
    retries: int = 0,
    on_failure: Literal["record", "raise"] = "record",
) -> EnsembleResult:
    """Evaluate ``fn`` on every row of ``inputs``.

    Parameters
    ----------
    fn : callable
        ``fn(x) -> array_like`` for one input row ``x`` (1-D array). Must be picklable when an
        executor in another process is used (a module-level function, not a lambda).
    inputs : array_like, shape (n, d)
        One row per run.
    executor : concurrent.futures.Executor, optional
        Where to run. ``None`` runs serially in this process. A Dask client's
        ``client.get_executor()`` scales out to a cluster.
    chunk_size : int, optional
        Rows per submitted task (default: about four tasks per worker, at least 1 row).
    retries : int
        How often a failing row is retried before it counts as failed.
    on_failure : {"record", "raise"}
        ``"record"`` keeps failed rows as NaN and lists them in ``failures``; ``"raise"`` raises
        :class:`~vvuq_twin.exceptions.EnsembleError` naming the failed inputs.

    Returns
    -------
    EnsembleResult
    """
    X = np.asarray(inputs, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"Expected `inputs` of shape (n_runs, n_inputs), got shape {X.shape}.")
    if on_failure not in ("record", "raise"):
        raise ValueError(f"`on_failure` must be 'record' or 'raise', got {on_failure!r}.")
    if retries < 0:
        raise ValueError(f"`retries` must be >= 0, got {retries}.")
    n = X.shape[0]
    t0 = time.perf_counter()
    if n == 0:
        return EnsembleResult(outputs=np.empty((0,)), n_runs=0, wall_time=0.0)
    if chunk_size is None:
        chunk_size = n if executor is None else max(1, n // 32)
    starts = list(range(0, n, chunk_size))
    if executor is None:
        parts = [_run_chunk(fn, X[s : s + chunk_size], s, retries) for s in starts]
    else:
        futures = [executor.submit(_run_chunk, fn, X[s : s + chunk_size], s, retries) for s in starts]
        parts = [f.result() for f in futures]
    results: list[tuple[int, Any, Any]] = []
    attempts = 0
    for chunk, a in parts:
        results.extend(chunk)
        attempts += a
    results.sort(key=lambda r: r[0])
    shape = None
    for _, y, _ in results:
        if y is not None:
            shape = y.shape
            break
    failures = [FailedRun(i, X[i].copy(), err) for i, y, err in results if y is None]
    if shape is None:
        shape = ()
    outputs = np.full((n, *shape), np.nan)
    for i, y, _ in results:
        if y is not None:
            if y.shape != shape:
                failures.append(
                    FailedRun(i, X[i].copy(), f"output shape {y.shape} differs from {shape}")
                )
                continue
            outputs[i] = y
    failures.sort(key=lambda f: f.index)
    res = EnsembleResult(outputs, failures, attempts, time.perf_counter() - t0)
    if failures and on_failure == "raise":
        shown = "; ".join(f"row {f.index} inputs={f.inputs.tolist()}: {f.error}" for f in failures[:5])
        raise EnsembleError(
            f"{len(failures)} of {n} runs failed after {retries} retries ({shown}). "
            "Pass on_failure='record' to keep the successful runs and inspect `failures`."
        )
    return res
