"""Light modules do not import the torch stack (torch, gpytorch, botorch) until it is used.

Each import runs in a fresh interpreter, so that what another test imported does not count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "gpytorch", "botorch")

LIGHT = [
    "import vvuq_twin",
    "import vvuq_twin.design",
    "import vvuq_twin.sensitivity",
    "import vvuq_twin.risk",
    "import vvuq_twin.assimilation",
    "import vvuq_twin.decisions",
    "import vvuq_twin.spaces",
    # the numpy design path that the case studies use, and the errors a caller catches
    "from vvuq_twin.design import twin_design_utilities, steer_twin, twin_eig_closed_form, DesignError",
]


def _loaded(statement: str) -> list[str]:
    code = (f"import sys, json\n{statement}\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("statement", LIGHT)
def test_light_import_does_not_load_torch(statement):
    assert _loaded(statement) == []


def test_probe_sees_torch_when_it_is_loaded():
    """The probe can fail: the torch estimators do load torch (on first use, as designed)."""
    assert "torch" in _loaded("import vvuq_twin.design as d\nd.DesignProblem")


def test_lazy_names_are_the_real_objects():
    import vvuq_twin.design as d
    from vvuq_twin import exceptions
    from vvuq_twin.design import problem, twin

    assert d.DesignProblem is problem.DesignProblem
    assert d.twin_design_utilities is twin.twin_design_utilities
    assert d.DesignError is exceptions.DesignError is problem.DesignError
    assert set(d.__all__) <= set(dir(d))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        d.nope  # noqa: B018
