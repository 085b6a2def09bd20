"""Feedback on long work: calibration, prediction, sensitivity, design and validation.

Progress is **on by default**. Every long call takes ``progressbar: bool | None`` (``None``:
the default, on unless ``VVUQ_TWIN_PROGRESS=0`` is set); the CLI takes ``--no-progress``.

* In a terminal (stderr is a TTY) the sampler's own progress bar is shown (nutpie / PyMC),
  framed by a start and an end line.
* Without a terminal (CI logs, ``nohup``, a batch job writing to a file) bars would print
  nothing useful, so a plain-text heartbeat writes one line every ``VVUQ_TWIN_PROGRESS_INTERVAL``
  seconds (default 30) to stderr - ``[vvuq_twin] calibrate twin 'pk' (nutpie): 90 s elapsed`` -
  and a line when the step ends.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO

__all__ = ["progress_enabled", "interactive", "Progress"]


def progress_enabled(progressbar: bool | None) -> bool:
    """Resolve a ``progressbar`` argument: ``None`` means on unless ``VVUQ_TWIN_PROGRESS=0``."""
    if progressbar is None:
        return os.environ.get("VVUQ_TWIN_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")
    return bool(progressbar)


def interactive(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default stderr) is a terminal that can draw a progress bar."""
    s = sys.stderr if stream is None else stream
    try:
        return bool(s.isatty())
    except (AttributeError, ValueError):
        return False


def _interval() -> float:
    try:
        return max(0.05, float(os.environ.get("VVUQ_TWIN_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


class Progress:
    """Context manager announcing a long step; a heartbeat thread when no terminal is attached.

    Parameters
    ----------
    label : str
        What runs, e.g. ``"calibrate twin 'pk' (nutpie, 4 chains)"``.
    enabled : bool
        Print anything at all.
    interval : float, optional
        Seconds between heartbeat lines (default ``VVUQ_TWIN_PROGRESS_INTERVAL`` or 30).
    stream : file, optional
        Where to write (default ``sys.stderr``).

    Attributes
    ----------
    bar : bool
        Whether the wrapped library should draw its own bar (enabled and a terminal).
    """

    def __init__(self, label: str, enabled: bool = True, *, interval: float | None = None,
                 stream: IO[str] | None = None):
        self.label = label
        self.enabled = bool(enabled)
        self.stream = stream
        self.interval = _interval() if interval is None else float(interval)
        self.bar = self.enabled and interactive(stream)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = ""
        self.t0 = 0.0

    def _write(self, msg: str) -> None:
        s = sys.stderr if self.stream is None else self.stream
        try:
            print(f"[vvuq_twin] {msg}", file=s, flush=True)
        except (ValueError, OSError):  # closed stream: progress is best effort
            pass

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            extra = f", {self.status}" if self.status else ""
            self._write(f"{self.label}: {time.perf_counter() - self.t0:.0f} s elapsed{extra}")

    def __enter__(self) -> "Progress":
        self.t0 = time.perf_counter()
        if self.enabled:
            self._write(f"{self.label}: started")
            if not self.bar:
                self._thread = threading.Thread(target=self._beat, daemon=True, name="vvuq_twin-progress")
                self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self.enabled:
            dt = time.perf_counter() - self.t0
            self._write(f"{self.label}: {'failed' if exc_type else 'done'} after {dt:.1f} s")


def with_progress(label: str):
    """Decorator: run the function inside :class:`Progress` and give it a keyword-only
    ``progressbar: bool | None = None`` argument (on by default, ``False`` silences it)."""
    import functools
    import inspect

    def deco(fn):
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        if "progressbar" not in sig.parameters:
            extra = inspect.Parameter("progressbar", inspect.Parameter.KEYWORD_ONLY, default=None,
                                      annotation="bool | None")
            var_kw = [i for i, p in enumerate(params) if p.kind == p.VAR_KEYWORD]
            params.insert(var_kw[0] if var_kw else len(params), extra)

        @functools.wraps(fn)
        def wrapper(*args, progressbar: bool | None = None, **kwargs):
            with Progress(label, progress_enabled(progressbar)):
                return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper

    return deco
