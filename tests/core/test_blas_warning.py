"""PyTensor's pip-install BLAS warning is explained once, by vvuq_twin (issue 19 console polish).

Each check runs a fresh interpreter (the detection runs once per process) that compiles a
matrix product, the code path that makes PyTensor look for a BLAS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import vvuq_twin as vt, pytensor, pytensor.tensor as pt
vt.ODESimulator  # importing the twin layer installs the explanation
x = pt.dmatrix()
pytensor.function([x], x @ x)
pytensor.function([x], x @ x.T + 1)
print("LDFLAGS=" + repr(pytensor.config.blas__ldflags))
"""
PYTENSOR_TEXT = "Operations that might benefit from BLAS will be severely degraded"


def _run(extra_flags: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    flags = [f for f in env.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith("blas__ldflags")]
    if extra_flags is not None:
        flags.append(extra_flags)
    env["PYTENSOR_FLAGS"] = ",".join(flags)
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                          timeout=600, check=True)


@pytest.fixture(scope="module")
def detected():
    return _run(None)


def test_missing_blas_is_explained_once_with_cost_and_fix(detected):
    err = detected.stderr
    assert PYTENSOR_TEXT not in err  # PyTensor's generic text is replaced ...
    if "LDFLAGS=''" in detected.stdout:  # ... by one explanation when no BLAS was found
        assert err.count("BLASWarning") == 1
        assert "Cost:" in err and "Fix:" in err and "blas__ldflags=-lopenblas" in err
    else:  # a BLAS was found: nothing to explain
        assert "BLASWarning" not in err


def test_explicit_empty_ldflags_silences_it_without_detection():
    out = _run("blas__ldflags=")
    assert "LDFLAGS=''" in out.stdout
    assert "BLASWarning" not in out.stderr and PYTENSOR_TEXT not in out.stderr


def test_the_explanation_matches_filters_written_for_pytensors_warning():
    import re

    from vvuq_twin.twin._blas import BLAS_MESSAGE

    assert re.match("PyTensor could not link to a BLAS", BLAS_MESSAGE)
