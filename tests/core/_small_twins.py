"""A small linear-Gaussian twin with a closed-form posterior, shared by the compile-cache and
backend tests (one declaration, so one compilation per test process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import arviz as az
import numpy as np

import vvuq_twin as vt

SIGMA, PRIOR_SD = 0.3, 3.0


def line(X, p):
    return p["a"] + p["b"] * X[:, 0]


def make_twin(prior_sd: float = PRIOR_SD):
    sim = vt.PytensorSimulator(line, name="line_disk_cache")
    return vt.Twin("disk_cache", sim, [vt.Parameter("a", vt.NormalPrior(0, prior_sd)),
                                       vt.Parameter("b", vt.NormalPrior(0, prior_sd))],
                   observation=vt.GaussianObs(sigma=SIGMA))


def make_data(scale: float = 1.0, a: float = 0.5, b: float = 1.5, seed: int = 3):
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, 10) * scale
    return vt.TwinData(x=x, y=a + b * x + rng.normal(0, SIGMA, x.size))


def closed_form(data):
    """Posterior mean and covariance of (a, b)."""
    x, y = np.asarray(data.x[:, 0]), np.asarray(data.y)
    A = np.column_stack([np.ones_like(x), x])
    cov = np.linalg.inv(A.T @ A / SIGMA**2 + np.eye(2) / PRIOR_SD**2)
    return cov @ (A.T @ y / SIGMA**2), cov


def check_known_answer(res, data, means=None):
    """Posterior means within 4 MCSE of the closed form, sds within 10 %."""
    m, cov = closed_form(data)
    for i, v in enumerate(("a", "b")):
        d = res.posterior[v]
        mcse = float(az.mcse(d.to_dataset(name="v"), method="mean")["v"])
        got = float(d.mean()) if means is None else means[i]
        assert abs(got - m[i]) < 4 * mcse + 1e-12, (v, got, m[i])
        assert abs(float(d.std()) - np.sqrt(cov[i, i])) < 0.1 * np.sqrt(cov[i, i])


def ran_in_a_fresh_process(request, test_file: str) -> bool:
    """Run the calling test in a fresh pytest process when JAX's runtime already runs in this one.

    A child compile (what these tests check) is rightly skipped once JAX's runtime threads run
    in a process (another test of the suite may have started them); the test then runs where no
    JAX runs. Returns True when it ran (and passed) there: the caller returns.
    """
    from vvuq_twin.inference import _compile_cache as cc

    why = cc._child_compile_unavailable()
    if why is None or "JAX" not in why:
        return False
    assert os.environ.get("VVUQ_TEST_FRESH_PROCESS") != "1", "JAX's runtime runs even in a fresh process"
    root = Path(test_file).resolve().parents[2]
    env = {**os.environ, "VVUQ_TEST_FRESH_PROCESS": "1",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"{Path(test_file).resolve()}::{request.node.name}"],
                          env=env, cwd=str(root), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "1 passed" in proc.stdout, proc.stdout[-2000:]
    return True
