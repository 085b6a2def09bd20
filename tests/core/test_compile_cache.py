"""The compiled model of a declaration is kept on disk and reused by a new process.

A first ``calibrate`` in this process compiles and saves the model; a second ``calibrate`` of
the same declaration and data structure in a fresh Python process (subprocess) must report a
disk cache hit in ``info`` and give the very same draws at the same seed (so the cached machine
code is the model's own). Known answer: the conjugate linear-Gaussian posterior mean. Failure
cases: another declaration or data structure gets another key; the cache can be switched off.
The cache-hit flag is asserted, never a timing.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vvuq_twin as vt

sys.path.insert(0, str(Path(__file__).resolve().parent))

calmod = importlib.import_module("vvuq_twin.inference.calibrate")
cc = importlib.import_module("vvuq_twin.inference._compile_cache")

from _small_twins import check_known_answer, make_data, make_twin, ran_in_a_fresh_process  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KW = dict(draws=400, tune=300, chains=2, rng=5, warn=False)


def _digest(res) -> str:
    post = res.posterior
    blob = b"".join(np.ascontiguousarray(post[v].values).tobytes() for v in ("a", "b"))
    return hashlib.sha256(blob).hexdigest()


def _summary(res) -> dict:
    return {"info": {k: res.info[k] for k in ("compile_cache_hit", "compile_cache", "backend")},
            "digest": _digest(res),
            "mean": [float(res.posterior[v].mean()) for v in ("a", "b")]}



def test_a_new_process_reuses_the_compiled_model_from_disk(tmp_path, monkeypatch, request):
    if ran_in_a_fresh_process(request, __file__):
        return
    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path))
    calmod.clear_compile_cache()
    twin, data = make_twin(), make_data()
    first = vt.calibrate(twin, data, **KW)
    assert first.info["compile_cache_hit"] is False
    assert first.info["compile_cache"] == "miss: saved"
    assert list(tmp_path.glob("layout-*.json")), "nothing was written to the cache directory"
    # the first process samples with the machine code loaded from the cache file (compiled in a
    # child), not with its own fresh compile: the same code every later process loads
    (compiled,) = calmod._CACHE.values()
    assert compiled.compiled_logp_func._cache_hits == 1
    assert compiled.compiled_expand_func._cache_hits == 1
    # in the same process the in-memory cache answers first
    again = vt.calibrate(twin, data, **KW)
    assert again.info["compile_cache"] == "memory" and _digest(again) == _digest(first)

    out = tmp_path / "second.json"
    env = {**os.environ, "VVUQ_TWIN_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, __file__, str(out)], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = json.loads(out.read_text())
    assert second["info"]["compile_cache_hit"] is True, second["info"]
    assert second["info"]["compile_cache"] == "disk"
    assert second["info"]["backend"] == "numba"
    # the cached machine code is this model's: same seed, same draws, bit for bit
    assert second["digest"] == _digest(first)
    # and the posterior is the right one (conjugate closed form, within 4 MCSE)
    check_known_answer(first, data, means=second["mean"])


def test_without_a_child_the_first_process_runs_its_own_compile_and_says_so(tmp_path, monkeypatch, request):
    if ran_in_a_fresh_process(request, __file__):
        return
    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("VVUQ_TWIN_COMPILE_IN_CHILD", "0")
    calmod.clear_compile_cache()
    res = vt.calibrate(make_twin(), make_data(), **KW)
    assert res.info["compile_cache"].startswith("miss: saved (compiled in this process")
    assert "VVUQ_TWIN_COMPILE_IN_CHILD=0" in res.info["compile_cache"]
    (compiled,) = calmod._CACHE.values()
    assert compiled.compiled_logp_func._cache_hits == 0  # its own in-memory compile
    calmod.clear_compile_cache()
    # a child that cannot compile (here: it is killed by the timeout) falls back in-process
    monkeypatch.setenv("VVUQ_TWIN_COMPILE_IN_CHILD", "1")
    monkeypatch.setenv("VVUQ_TWIN_COMPILE_CHILD_TIMEOUT", "0")
    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path / "other"))
    res2 = vt.calibrate(make_twin(), make_data(), **KW)
    assert "timeout" in res2.info["compile_cache"] and "compiled in this process" in res2.info["compile_cache"]
    check_known_answer(res2, make_data())


def test_a_model_numba_cannot_cache_is_compiled_twice_once_then_once_per_process(tmp_path, monkeypatch, request):
    """A child's code cannot reach the parent when numba refuses to cache it: the first process
    compiles again in-process (and says so), keeps the verdict on disk, and a later process compiles
    once without a child. Failure case: without the verdict the second process would fork again."""
    if ran_in_a_fresh_process(request, __file__):
        return
    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path))
    calmod.clear_compile_cache()
    real = cc._compile_cfunc
    calls = {"n": 0}

    def refusing(pyfunc, sig):  # numba's "cannot cache" warning, as a dynamic-globals callback gets
        calls["n"] += 1
        cf, why = real(pyfunc, sig)
        return cf, [*why, "Cannot cache compiled function as it uses dynamic globals (test)"]

    monkeypatch.setattr(cc, "_compile_cfunc", refusing)
    res = vt.calibrate(make_twin(), make_data(), **KW)
    how = res.info["compile_cache"]
    assert how.startswith("miss: not cacheable") and "compiled twice" in how, how
    assert calls["n"] == 2  # in this process: logp and expand once (the child's calls are its own)
    assert list(tmp_path.glob("uncacheable-*.txt")) and not list(tmp_path.glob("layout-*.json"))
    check_known_answer(res, make_data())

    calmod.clear_compile_cache()
    calls["n"] = 0

    def no_child(*a, **k):
        raise AssertionError("a known not-cacheable model must not be compiled in a child")

    monkeypatch.setattr(cc, "_compile_in_child", no_child)
    again = vt.calibrate(make_twin(), make_data(), **KW)
    assert "known from an earlier process" in again.info["compile_cache"], again.info["compile_cache"]
    assert calls["n"] == 2 and _digest(again) == _digest(res)  # one in-process compile, same code
    # once numba caches it again, the verdict is dropped and the model is saved
    calmod.clear_compile_cache()
    monkeypatch.setattr(cc, "_compile_cfunc", real)
    third = vt.calibrate(make_twin(), make_data(), **KW)
    assert third.info["compile_cache"].startswith("miss: saved (compiled in this process")
    assert not list(tmp_path.glob("uncacheable-*.txt")) and list(tmp_path.glob("layout-*.json"))


def test_no_child_is_forked_while_jax_runs_in_the_process(monkeypatch):
    """JAX's runtime threads make fork unsafe (JAX warns of a deadlock): a miss is compiled in
    this process instead, and the status says why. Before JAX starts its runtime, a child is used."""
    import types

    monkeypatch.delenv("VVUQ_TWIN_COMPILE_IN_CHILD", raising=False)
    fake = types.ModuleType("jax._src.xla_bridge")
    fake.backends_are_initialized = lambda: False
    monkeypatch.setitem(sys.modules, "jax._src.xla_bridge", fake)
    assert cc._child_compile_unavailable() is None
    fake.backends_are_initialized = lambda: True
    assert "JAX" in cc._child_compile_unavailable()


_TUMOR_PROBE = """
import hashlib, json, sys
import numpy as np
import vvuq_twin as vt
from case_studies.tumor.run import candidate_twin, OPEN_FRACTION, THRESHOLD_MM3
from case_studies.tumor.data import load_tumor, split_at_decision_day
from case_studies.tumor.scenarios import pooled_gompertz_fit
cal = split_at_decision_day(load_tumor(None)[0], THRESHOLD_MM3, OPEN_FRACTION)["calibration"]
plain = pooled_gompertz_fit(cal.x[:, 0], cal.y, cal.unit)
tw = candidate_twin("none", quick=True, reference=(plain["k"], plain["beta_geomean"]))
res = vt.calibrate(tw, cal, rng=123, draws=200, tune=300, chains=2, mass_matrix="low_rank",
                   target_accept=0.95, warn=False)
post = res.posterior
blob = b"".join(np.ascontiguousarray(post[v].values).tobytes() for v in sorted(post.data_vars))
print(json.dumps({"cache": res.info["compile_cache"], "digest": hashlib.sha256(blob).hexdigest()}))
"""


def _tumor_run(cache: Path, child: str) -> dict:
    env = {**os.environ, "VVUQ_TWIN_COMPILE_IN_CHILD": child, "XDG_CACHE_HOME": str(cache),
           "PYTENSOR_FLAGS": f"base_compiledir={cache / 'pytensor'}", "NUMBA_CACHE_DIR": str(cache / "numba"),
           "VVUQ_TWIN_CACHE_DIR": str(cache / "vt"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _TUMOR_PROBE], env=env, cwd=str(ROOT), capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_first_and_second_process_draw_the_same_on_the_tumor_twin(tmp_path):
    """The defect this guards against, measured: on the tumor twin (hierarchical reduced Gompertz)
    numba's fresh machine code and the same code loaded from its cache file differ in the last bits
    of the log density, so a first process that sampled with its own compile drew other numbers than
    every later process at the same seed (every draw differed). With the child compile they agree."""
    pytest.importorskip("case_studies.tumor.run")
    cold = _tumor_run(tmp_path / "a", "1")
    warm = _tumor_run(tmp_path / "a", "1")
    assert cold["cache"] == "miss: saved" and warm["cache"] == "disk"
    assert cold["digest"] == warm["digest"]
    # failure case: compiled in the first process itself, its draws are not the later processes'
    cold0 = _tumor_run(tmp_path / "b", "0")
    warm0 = _tumor_run(tmp_path / "b", "0")
    assert cold0["cache"].startswith("miss: saved (compiled in this process") and warm0["cache"] == "disk"
    assert warm0["digest"] == warm["digest"]  # the cache file's code is the same in both
    assert cold0["digest"] != warm0["digest"]


def test_cache_key_separates_declarations_structures_and_can_be_switched_off(monkeypatch, tmp_path):
    t1, t2 = make_twin(), make_twin(prior_sd=2.0)
    d1, d2 = make_data(), make_data(scale=2.0)
    k = cc.cache_key(t1.hash, d1.structure_hash)
    assert k == cc.cache_key(make_twin().hash, make_data().structure_hash)  # stable
    assert k != cc.cache_key(t2.hash, d1.structure_hash)  # another prior
    assert k != cc.cache_key(t1.hash, d2.structure_hash)  # other inputs
    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path / "c"))
    assert cc.cache_dir() == tmp_path / "c"
    monkeypatch.setenv("VVUQ_TWIN_COMPILE_CACHE", "0")
    assert not cc.cache_enabled()
    monkeypatch.setenv("VVUQ_TWIN_COMPILE_CACHE", "1")
    assert cc.cache_enabled()


def test_prune_keeps_the_most_recent_models_and_their_files(monkeypatch, tmp_path):
    import time as _time

    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path))
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5)]
    for i, k in enumerate(keys):
        for name in (f"layout-{k}.json", f"x vvuq_twin_logp-{k[:40]}.py311.nbi",
                     f"x vvuq_twin_expand-{k[:40]}.py311.1.nbc"):
            (tmp_path / name).write_text("{}")
            os.utime(tmp_path / name, (_time.time() + i, _time.time() + i))
    removed = cc.prune(3)
    assert sorted(removed) == sorted(keys[:2])  # the two oldest
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 9 and not any(k[:40] in n for k in keys[:2] for n in left)


def test_bad_backend_and_mass_matrix_fail_before_compiling():
    twin, data = make_twin(), make_data()
    with pytest.raises(ValueError, match="backend"):
        vt.calibrate(twin, data, backend="stan")
    with pytest.raises(ValueError, match="mass_matrix"):
        vt.calibrate(twin, data, mass_matrix="dense")


if __name__ == "__main__":  # the second process of the first test
    res = vt.calibrate(make_twin(), make_data(), **KW)
    Path(sys.argv[1]).write_text(json.dumps(_summary(res)))
