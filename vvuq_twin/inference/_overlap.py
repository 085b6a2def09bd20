"""Work for the main thread while nutpie samples (issue #18: the README job's warm run).

nutpie samples in its own (Rust) threads and releases the GIL; with ``blocking=True`` the main
thread only waits. On the 2-core machine of the README job the sampling of 4 chains on 2
threads does not keep both cores busy all the time (about 1.3 cores on average, estimated from
the idle warm run's CPU and wall times in ``benchmarks/RESULTS.md``), and the steps after it
start with third-party imports that do not depend on the draws:
nutpie's Arrow -> ArviZ conversion makes xarray probe for dask on its first ``Variable``
(importing ``dask.array``), and xarray's NetCDF writer imports ``h5netcdf`` and asks dask for
its scheduler (importing ``dask.distributed``).

:func:`while_sampling` does that work while the sampler runs, between the start of sampling
and :meth:`wait`: the same imports the later steps would make, earlier, in an otherwise idle
window. It never changes what is computed (imports only; no random state is touched); each
step is done once per process, and is work that would otherwise follow the sampling, so a
sampler that finishes first loses nothing but the overlap. A step that fails (a package not
installed) is skipped: the later step that needs it raises its own error as before.

The NetCDF writer's imports are only prefetched when the caller said it will write
(:func:`expect_netcdf_write`, called by the ``vvuq-twin run`` command): a library user who never
saves does not pay for ``dask.distributed``. ``VVUQ_TWIN_OVERLAP=0`` switches the overlap off
(then ``calibrate`` samples with ``blocking=True`` as before).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import time
from typing import Any, Callable

__all__ = ["expect_netcdf_write", "overlap_enabled", "sample_overlapped", "while_sampling"]

_ENV = "VVUQ_TWIN_OVERLAP"
_WRITE_EXPECTED = False
#: names of the steps done in this process (each is done at most once)
DONE: list[str] = []


def overlap_enabled() -> bool:
    """False when ``$VVUQ_TWIN_OVERLAP`` is ``0``/``false``/``off``/``no``."""
    return os.environ.get(_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def expect_netcdf_write(expected: bool = True) -> None:
    """Say that this process will write NetCDF (h5netcdf engine) after calibrating.

    Parameters
    ----------
    expected : bool
        True: :func:`while_sampling` also imports what xarray's NetCDF writer imports at its
        first call (``h5netcdf``; ``dask.distributed`` through xarray's scheduler probe).
        False: it no longer does (the default of a new process).
    """
    global _WRITE_EXPECTED
    _WRITE_EXPECTED = bool(expected)


def _xarray_duck_probe() -> None:
    # xarray caches, per process, which duck-array modules exist; the first Variable of
    # nutpie's conversion fills that cache (importing dask.array when dask is installed)
    import numpy as np
    import xarray as xr

    xr.Variable(("draw",), np.zeros(1))


def _import_own() -> None:
    importlib.import_module("vvuq_twin.inference._fast_predictive")
    importlib.import_module("vvuq_twin.domain")


def _import_if_present(name: str) -> None:
    if importlib.util.find_spec(name.split(".")[0]) is not None:
        importlib.import_module(name)


def _steps() -> list[tuple[str, Callable[[], None]]]:
    steps: list[tuple[str, Callable[[], None]]] = [
        ("xarray duck-array probe", _xarray_duck_probe),
        # ours, imported lazily by the posterior predictive and by predict (domain check)
        ("import vvuq_twin post-sampling modules", _import_own),
    ]
    if _WRITE_EXPECTED:
        steps += [
            ("import h5netcdf", lambda: _import_if_present("h5netcdf")),
            # xarray's writer asks dask for its scheduler: `from dask.distributed import Client`
            ("import dask.distributed", _import_dask_distributed),
        ]
    return steps


def _import_dask_distributed() -> None:
    if importlib.util.find_spec("dask") is None or importlib.util.find_spec("distributed") is None:
        return
    importlib.import_module("dask.distributed")


def while_sampling() -> list[str]:
    """Do the steps not yet done in this process.

    A step that raises is skipped (and tried again in a later call). There is no check whether
    the sampler has finished in between: nutpie 0.16's ``is_finished`` raises ``TimeoutError``
    while it runs, and every step is work that would otherwise follow the sampling anyway.

    Returns
    -------
    list of str
        The names of the steps done by this call (also appended to :data:`DONE`).
    """
    done = []
    for name, step in _steps():
        if name in DONE:
            continue
        try:
            step()
        except Exception:  # noqa: BLE001 - prefetching must never fail a calibration
            continue
        DONE.append(name)
        done.append(name)
    return done


def sample_overlapped(nutpie_module: Any, compiled: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """``nutpie.sample(compiled, **kwargs)``, doing :func:`while_sampling` while it samples.

    The same as ``nutpie.sample(..., blocking=True)`` (which is ``sample(blocking=False)``
    followed by ``wait()``, aborting on KeyboardInterrupt and cancelling on any other error),
    with the overlap between the start of sampling and ``wait()``.

    Parameters
    ----------
    nutpie_module : module
        ``nutpie`` (passed in so that the caller's import is the one used).
    compiled : nutpie compiled model
    **kwargs
        ``nutpie.sample`` keywords other than ``blocking``.

    Returns
    -------
    trace : arviz.InferenceData
        What ``nutpie.sample`` returns (the aborted trace after KeyboardInterrupt).
    record : dict
        ``steps``: the steps done while sampling; ``seconds``: the time they took.
    """
    sampler = nutpie_module.sample(compiled, blocking=False, **kwargs)
    t0 = time.perf_counter()
    try:
        done = while_sampling()
        t1 = time.perf_counter()
        result = sampler.wait()
    except KeyboardInterrupt:
        result = sampler.abort()
        done, t1 = [], time.perf_counter()
    except BaseException:
        sampler.cancel()
        raise
    return result, {"steps": done, "seconds": round(t1 - t0, 4)}
