"""One door for simulator ensembles: serial, local processes, or a Dask cluster.

Sensitivity designs, surrogate training sets, Monte Carlo for risk, EIG estimation and scenario
worlds all evaluate a model through :func:`evaluate`. It accepts any
:class:`concurrent.futures.Executor` (``None`` means serial, in-process), for example a
:class:`concurrent.futures.ProcessPoolExecutor` or ``dask.distributed.Client(...).get_executor()``.
Results come back in input order, so the same inputs give the same outputs whatever the executor.
A failed run - one that raises, returns NaN/inf, returns an output of another shape than the
other runs, or kills its worker process - is retried ``retries`` times and then either recorded
with its inputs (the default) or raised; it is never dropped silently, and it never costs the
finished runs of other rows.
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
    worker_crashes : int
        Tasks lost because their worker process died (their rows were re-run in fresh
        processes; see :func:`evaluate`).
    """

    outputs: np.ndarray
    failures: list[FailedRun] = field(default_factory=list)
    n_runs: int = 0
    wall_time: float = 0.0
    worker_crashes: int = 0

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of rows that succeeded."""
        mask = np.ones(self.outputs.shape[0], dtype=bool)
        for f in self.failures:
            mask[f.index] = False
        return mask


def _one_row(fn: Callable[[np.ndarray], Any], x: np.ndarray, retries: int,
             allow_nonfinite: bool) -> tuple[Any, str | None, int]:
    """Run one row with retries: ``(output or None, error or None, attempts)``."""
    last_err = ""
    for attempt in range(retries + 1):
        try:
            y = np.asarray(fn(x), dtype=float)
        except Exception as exc:  # noqa: BLE001 - recorded with its inputs, never dropped
            last_err = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            continue
        if not allow_nonfinite:
            bad = np.flatnonzero(~np.isfinite(y.ravel()))
            if bad.size:
                last_err = (f"non-finite output: {bad.size} of {y.size} value(s) NaN or inf, first "
                            f"at flat position {int(bad[0])} (value {y.ravel()[bad[0]]})")
                continue
        return y, None, attempt + 1
    return None, last_err, retries + 1


def _run_chunk(fn: Callable[[np.ndarray], Any], rows: np.ndarray, start: int, retries: int,
               allow_nonfinite: bool = False):
    out = []
    attempts = 0
    for i, x in enumerate(rows):
        y, err, a = _one_row(fn, x, retries, allow_nonfinite)
        attempts += a
        out.append((start + i, y, err))
    return out, attempts


def _isolated_target(conn, fn, x, retries, allow_nonfinite):  # pragma: no cover - child process
    try:
        conn.send(_one_row(fn, x, retries, allow_nonfinite))
    finally:
        conn.close()


def _run_isolated(fn: Callable[[np.ndarray], Any], x: np.ndarray, retries: int,
                  allow_nonfinite: bool, cause: str) -> tuple[Any, str | None, int]:
    """Run one row in a fresh process; a process that dies is a recorded failure."""
    import multiprocessing as mp
    import signal

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_isolated_target, args=(send, fn, x, retries, allow_nonfinite),
                       daemon=True)
    proc.start()
    send.close()
    try:
        msg = recv.recv()
    except EOFError:
        msg = None
    proc.join()
    recv.close()
    if msg is not None:
        return msg
    code = proc.exitcode
    how = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
           else f"exit code {code}")
    return None, (f"the worker process died while running this row ({cause}); retried once in a "
                  f"fresh process, which died too ({how})"), 1


def _modal_shape(shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    if not shapes:
        return None
    counts: dict[tuple[int, ...], int] = {}
    for sh in shapes:
        counts[sh] = counts.get(sh, 0) + 1
    best = max(counts.values())
    return next(sh for sh in shapes if counts[sh] == best)  # ties: the first seen


def evaluate(
    fn: Callable[[np.ndarray], Any],
    inputs: np.ndarray | Sequence[Sequence[float]],
    *,
    executor: Executor | None = None,
    chunk_size: int | None = None,
    retries: int = 0,
    on_failure: Literal["record", "raise"] = "record",
    output_shape: Sequence[int] | None = None,
    allow_nonfinite: bool = False,
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
    output_shape : sequence of int, optional
        Expected shape of one row's output. Default: the shape most successful rows return, so
        one odd row (even the first) is the failure, not the rows that agree.
    allow_nonfinite : bool
        Accept NaN/inf outputs as results. Default False: a run returning NaN or inf is a
        failure (retried, then recorded with its inputs) like one that raises.

    Returns
    -------
    EnsembleResult

    Notes
    -----
    A run that kills its worker process (segfault, ``os._exit``, out of memory) with a process
    or Dask executor loses no finished run: every row of a task lost with the worker is run
    again, once, in a fresh local process (forked where the platform allows); a row that kills
    that process too is recorded as failed with its inputs, and the result holds every other
    row. Serially (``executor=None``) such a run kills the caller: use a process executor for
    simulators that may crash.
    """
    X = np.asarray(inputs, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"Expected `inputs` of shape (n_runs, n_inputs), got shape {X.shape}.")
    if on_failure not in ("record", "raise"):
        raise ValueError(f"`on_failure` must be 'record' or 'raise', got {on_failure!r}.")
    if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
        raise ValueError(f"`retries` must be an integer >= 0, got {retries!r}.")
    if chunk_size is not None and (isinstance(chunk_size, bool) or
                                   not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ValueError(f"`chunk_size` must be an integer >= 1, got {chunk_size!r}.")
    n = X.shape[0]
    t0 = time.perf_counter()
    if n == 0:
        return EnsembleResult(outputs=np.empty((0,)), n_runs=0, wall_time=0.0)
    if chunk_size is None:
        chunk_size = n if executor is None else max(1, n // 32)
    starts = list(range(0, n, chunk_size))
    results: list[tuple[int, Any, Any]] = []
    attempts = 0
    crashes = 0
    if executor is None:
        parts = [_run_chunk(fn, X[s : s + chunk_size], s, retries, allow_nonfinite) for s in starts]
    else:
        futures = [executor.submit(_run_chunk, fn, X[s : s + chunk_size], s, retries,
                                   allow_nonfinite) for s in starts]
        parts = []
        for s, fut in zip(starts, futures):
            try:
                parts.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - a lost worker (BrokenProcessPool, KilledWorker)
                crashes += 1
                cause = f"{type(exc).__name__} from the executor"
                for i in range(s, min(s + chunk_size, n)):
                    y, err, a = _run_isolated(fn, X[i], retries, allow_nonfinite, cause)
                    results.append((i, y, err))
                    attempts += a
    for chunk, a in parts:
        results.extend(chunk)
        attempts += a
    results.sort(key=lambda r: r[0])
    shape = tuple(int(v) for v in output_shape) if output_shape is not None else \
        _modal_shape([y.shape for _, y, _ in results if y is not None])
    failures = [FailedRun(i, X[i].copy(), err) for i, y, err in results if y is None]
    if shape is None:
        shape = ()
    outputs = np.full((n, *shape), np.nan)
    for i, y, _ in results:
        if y is not None:
            if y.shape != shape:
                what = "the expected" if output_shape is not None else "the shape most runs return,"
                failures.append(
                    FailedRun(i, X[i].copy(), f"output shape {y.shape} differs from {what} {shape}")
                )
                continue
            outputs[i] = y
    failures.sort(key=lambda f: f.index)
    res = EnsembleResult(outputs, failures, attempts, time.perf_counter() - t0, crashes)
    if failures and on_failure == "raise":
        shown = "; ".join(f"row {f.index} inputs={f.inputs.tolist()}: {f.error}" for f in failures[:5])
        raise EnsembleError(
            f"{len(failures)} of {n} runs failed after {retries} retries ({shown}). "
            "Pass on_failure='record' to keep the successful runs and inspect `failures`."
        )
    return res
