"""nutpie's backends and mass-matrix adaptation, each against the conjugate closed form.

Known answer: the linear-Gaussian posterior mean of (a, b) (within 4 MCSE, sds within 10 %)
for nutpie's JAX backend and for the low-rank mass-matrix adaptation; the JAX backend also
reuses its compiled model for new observations at the same inputs and gets their own
posterior (the second run takes its backend from ``$VVUQ_TWIN_BACKEND``). Failure cases: a
calibrate that fell back to another sampler fails the check; an unknown backend in the
environment is refused before anything compiles.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import vvuq_twin as vt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _small_twins import check_known_answer, make_data, make_twin  # noqa: E402

KW = dict(draws=500, tune=400, chains=2, warn=False)


def test_low_rank_mass_matrix_gives_the_conjugate_posterior():
    data = make_data(a=1.0, b=2.0, seed=1)
    res = vt.calibrate(make_twin(), data, rng=3, mass_matrix="low_rank", **KW)
    assert res.info["sampler"] == "nutpie" and res.info["mass_matrix"] == "low_rank"
    check_known_answer(res, data)


def test_jax_backend_gives_the_conjugate_posterior_and_reuses_its_compilation(monkeypatch):
    pytest.importorskip("jax")
    d1, d2 = make_data(a=1.0, b=2.0, seed=1), make_data(a=-2.0, b=0.5, seed=2)
    r1 = vt.calibrate(make_twin(), d1, rng=3, backend="jax", **KW)
    monkeypatch.setenv("VVUQ_TWIN_BACKEND", "jax")  # the default backend from the environment
    r2 = vt.calibrate(make_twin(), d2, rng=3, **KW)
    for r in (r1, r2):
        assert r.info["sampler"] == "nutpie", "fell back from nutpie's JAX backend"
        assert r.info["backend"] == "jax"
    assert r2.info["compile_cache"] == "memory"
    check_known_answer(r1, d1)
    check_known_answer(r2, d2)


def test_backend_from_the_environment_is_checked_before_compiling(monkeypatch):
    monkeypatch.setenv("VVUQ_TWIN_BACKEND", "cuda")
    with pytest.raises(ValueError, match=r"VVUQ_TWIN_BACKEND.*'cuda'"):
        vt.calibrate(make_twin(), make_data(a=1.0, b=2.0, seed=1), rng=3, **KW)


def test_flow_adaptation_is_refused_early_on_the_numba_backend_or_without_flowjax(monkeypatch):
    data = make_data(a=1.0, b=2.0, seed=1)
    with pytest.raises(ValueError, match=r"mass_matrix='flow'.*JAX backend only.*backend='numba'"):
        vt.calibrate(make_twin(), data, rng=3, mass_matrix="flow", backend="numba", **KW)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flowjax" else real(name, *a))
    with pytest.raises(ImportError, match=r"needs flowjax: pip install 'vvuq-twin\[flow\]'"):
        vt.calibrate(make_twin(), data, rng=3, mass_matrix="flow", **KW)
    with pytest.raises(ValueError, match=r"'diag', 'low_rank' or 'flow', got 'dense'"):
        vt.calibrate(make_twin(), data, rng=3, mass_matrix="dense", **KW)


@pytest.mark.slow
def test_flow_adaptation_gives_the_conjugate_posterior():
    """nutpie's normalising-flow adaptation (``transform_adapt``, JAX backend): the known answer
    holds and the info says which adaptation and backend ran (minutes: the flow is trained)."""
    pytest.importorskip("flowjax")
    data = make_data(a=1.0, b=2.0, seed=1)
    res = vt.calibrate(make_twin(), data, rng=3, mass_matrix="flow", **KW)
    assert res.info["sampler"] == "nutpie" and res.info["mass_matrix"] == "flow" and res.info["backend"] == "jax"
    check_known_answer(res, data)
