"""PyTensor's "could not link to a BLAS installation" warning, explained once.

A pip-installed PyTensor finds no BLAS to link and warns with a generic three-paragraph text
on the first compilation of every process. :func:`explain_missing_blas` wraps PyTensor's lazy
detection (the default of ``config.blas__ldflags``) so that, when detection fails, one
:class:`~vvuq_twin.exceptions.BLASWarning` says what it costs for a twin and how to fix or
silence it, instead of PyTensor's text. The explanation starts with PyTensor's own first words,
so a filter written for PyTensor's warning (``warnings.filterwarnings("ignore", message=
"PyTensor could not link to a BLAS")``) silences it too. Nothing changes when a BLAS is found, when the user set
``blas__ldflags`` themselves (then no detection runs and nothing is printed) or when PyTensor's
internals differ from what this expects (then PyTensor's own warning is left as it is).
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["BLAS_MESSAGE", "explain_missing_blas"]

_PYTENSOR_TEXT = "PyTensor could not link to a BLAS installation"

BLAS_MESSAGE = (
    "PyTensor could not link to a BLAS installation (usual for a pip install; explained "
    "once by vvuq_twin). Cost: PyTensor's C "
    "matrix products (Gemm/Gemv) fall back to slower NumPy calls; this matters only for twins "
    "whose log density is dominated by large dense linear algebra in PyTensor's C backend "
    "(e.g. an exact GP discrepancy on hundreds of points), not for nutpie/numba-compiled "
    "models or NumPy code. Fix: `conda install -c conda-forge pytensor`, or install the "
    "OpenBLAS development library (Debian/Ubuntu: libopenblas-dev) and set "
    "PYTENSOR_FLAGS='blas__ldflags=-lopenblas'. To silence this without fixing it, set "
    "PYTENSOR_FLAGS='blas__ldflags=' (no detection runs). See the docs' How-to: speed."
)


def explain_missing_blas() -> bool:
    """Replace PyTensor's BLAS warning by :data:`BLAS_MESSAGE` (once per process).

    Returns True when the hook is installed (PyTensor's detection has not run yet and its
    config parameter looks as expected), False otherwise.
    """
    try:
        import pytensor

        param: Any = pytensor.config._config_var_dict["blas__ldflags"]
    except Exception:  # pragma: no cover - another PyTensor layout: keep its own warning
        return False
    if hasattr(param, "val") or getattr(param, "_vvuq_wrapped", False):
        return False  # already detected (or set by the user), or already wrapped
    detect = param._default
    if not callable(detect):
        return False

    def detect_and_explain() -> str:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PYTENSOR_TEXT, category=UserWarning)
            flags = detect()
        if not flags:
            from ..exceptions import BLASWarning

            warnings.warn(BLAS_MESSAGE, BLASWarning, stacklevel=2)
        return flags

    param._default = detect_and_explain
    param._vvuq_wrapped = True
    return True
