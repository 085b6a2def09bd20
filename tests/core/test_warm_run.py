"""What a second process of the README job no longer pays (issue #18).

ArviZ's numba-jitted variance (behind ``rhat``/``ess``) is declared without ``cache=True`` and
was compiled again in every process; ``compute_diagnostics`` gives it numba's on-disk cache.
Known answer: R-hat and ESS from the cached machine code equal ArviZ's numpy path (numba
switched off, ``np.var``) to rounding, and the second process loads the function from the cache
(numba's own hit counter) instead of compiling it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

CODE = r"""
import json, sys
import arviz as az, numpy as np
from arviz.stats import stats_utils
from vvuq_twin.inference.diagnostics import compute_diagnostics
rng = np.random.default_rng(4)
idata = az.from_dict(posterior={"a": rng.normal(size=(4, 500)),
                                "b": np.cumsum(rng.normal(size=(4, 500)), axis=1)},
                     sample_stats={"diverging": np.zeros((4, 500), bool),
                                   "energy": rng.normal(size=(4, 500))})
d = compute_diagnostics(idata, sampler="nutpie")
fn = stats_utils.stats_variance_1d.numba_fn
az.Numba.disable_numba()
ref = az.rhat(idata.posterior)
print(json.dumps({"rhat": [float(d.table["rhat_max"].sel(variable=v)) for v in ("a", "b")],
                  "rhat_numpy": [float(ref[v]) for v in ("a", "b")],
                  "hits": sum(fn.stats.cache_hits.values()),
                  "misses": sum(fn.stats.cache_misses.values())}))
"""


def _run(env):
    proc = subprocess.run([sys.executable, "-c", CODE], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_arviz_variance_is_compiled_once_across_processes(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    first = _run(env)
    assert first["misses"] >= 1 and first["hits"] == 0
    assert list(tmp_path.rglob("*stats_variance_1d*.nbi")), "nothing written to numba's cache"
    second = _run(env)
    assert second["hits"] >= 1 and second["misses"] == 0, second
    for got in (first, second):
        np.testing.assert_allclose(got["rhat"], got["rhat_numpy"], rtol=1e-10)
    assert second["rhat"] == first["rhat"]
    assert first["rhat"][1] > 1.05 > first["rhat"][0]  # the random walk fails, the iid draws pass


def test_the_command_freezes_its_objects_before_exit_and_a_caller_is_left_alone(monkeypatch):
    """``vvuq-twin`` (argv None) freezes the heap so that shutdown skips one more collection;
    ``main([...])`` called from Python (a test, a notebook) leaves the collector as it was."""
    import gc

    from vvuq_twin import cli

    calls = []
    monkeypatch.setattr(cli, "_main", lambda argv: calls.append(argv) or 3)
    before = gc.get_freeze_count()
    assert cli.main(["run", "--out", "x"]) == 3
    assert gc.get_freeze_count() == before
    try:
        assert cli.main() == 3
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
    assert calls == [["run", "--out", "x"], None]
