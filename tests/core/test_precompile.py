"""``precompile`` compiles several declarations at once, in parallel children, and changes no draw.

Known answers: after ``precompile`` every job's ``calibrate`` loads its model from disk
(``info["compile_cache"] == "disk"``) and draws exactly (bit for bit) what the same call draws
in a fresh cache without ``precompile``; the posterior is the conjugate closed form. The loop
precompiles the calibrations of the steps still to run and records it in its volatile block
only. Failure cases: a job of another sampler is not applicable, a bad job raises before any
compile, no child (``VVUQ_TWIN_COMPILE_IN_CHILD=0``) skips and ``calibrate`` compiles as usual.
"""

from __future__ import annotations

import hashlib
import json
import os
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import vvuq_twin as vt
from vvuq_twin.loop import Calibrate, DataSplit, LoopSpecError, VVUQLoop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _small_twins import check_known_answer, make_data, make_twin, ran_in_a_fresh_process  # noqa: E402

calmod = importlib.import_module("vvuq_twin.inference.calibrate")
KW = dict(draws=300, tune=300, chains=2, rng=11, warn=False, progressbar=False)


def _digest(res) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(res.posterior[v].values).tobytes()
                                   for v in ("a", "b"))).hexdigest()


def test_precompile_compiles_two_declarations_in_parallel_and_changes_no_draw(tmp_path, monkeypatch, request):
    if ran_in_a_fresh_process(request, __file__):
        return
    data = make_data()
    # reference: each declaration calibrated in its own fresh cache, without precompile
    ref = {}
    for sd in (3.0, 2.0):
        monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path / f"ref{sd}"))
        calmod.clear_compile_cache()
        res = vt.calibrate(make_twin(sd), data, **KW)
        assert res.info["compile_cache"] == "miss: saved", res.info["compile_cache"]
        ref[sd] = _digest(res)
    assert ref[3.0] != ref[2.0]  # two declarations, two posteriors

    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path / "pre"))
    calmod.clear_compile_cache()
    jobs = [(make_twin(3.0), data), (make_twin(2.0), data, {"draws": 5}), (make_twin(3.0), data),
            (make_twin(3.0), data, {"method": "smc"})]
    rows = vt.precompile(jobs, max_workers=2)
    assert [r["status"] for r in rows] == ["saved", "saved", "saved", "not applicable: calibrates with smc"]
    assert rows[0]["key"] == rows[2]["key"] != rows[1]["key"] and rows[3]["key"] is None
    assert len(list((tmp_path / "pre").glob("layout-*.json"))) == 2
    again = vt.precompile(jobs[:2])
    assert [r["status"] for r in again] == ["disk", "disk"]
    for sd in (3.0, 2.0):
        res = vt.calibrate(make_twin(sd), data, **KW)
        assert res.info["compile_cache"] == "disk" and res.info["compile_cache_hit"] is True
        assert _digest(res) == ref[sd]  # the very draws of a calibration without precompile
    check_known_answer(vt.calibrate(make_twin(3.0), data, **KW), data)


def test_precompile_skips_without_a_child_and_rejects_bad_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("VVUQ_TWIN_COMPILE_IN_CHILD", "0")
    calmod.clear_compile_cache()
    (row,) = vt.precompile([(make_twin(1.5), make_data())])
    assert row["status"] == "skipped: $VVUQ_TWIN_COMPILE_IN_CHILD=0"
    assert not list(tmp_path.glob("layout-*.json"))  # nothing compiled
    monkeypatch.setenv("VVUQ_TWIN_COMPILE_IN_CHILD", "1")
    with pytest.raises(TypeError, match=r"jobs\[1\] must be \(twin, data\)"):
        vt.precompile([(make_twin(), make_data()), make_twin()])
    assert not list(tmp_path.glob("layout-*.json"))  # raised before compiling the good first job
    with pytest.raises(TypeError, match=r"jobs\[0\] must start with a Twin and a TwinData"):
        vt.precompile([(make_data(), make_twin())])
    with pytest.raises(ValueError, match="max_workers"):
        vt.precompile([], max_workers=0)


def test_the_loop_precompiles_what_its_steps_will_calibrate(tmp_path, monkeypatch, request):
    if ran_in_a_fresh_process(request, __file__):
        return
    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path / "cache"))
    calmod.clear_compile_cache()
    data = make_data()
    twin = make_twin(2.5)
    loop = VVUQLoop(twin, DataSplit(data), [Calibrate(draws=300, tune=300, chains=2)], seed=3,
                    out=tmp_path / "a", progress=False)
    res = loop.run()
    pre = res.volatile["precompile"]
    assert [(j["step"], j["status"]) for j in pre["jobs"]] == [("calibrate", "saved")]
    assert res.objects["calibrate"].info["compile_cache"] == "disk"  # the step loaded what was precompiled
    # without precompile (a fresh cache): the same JSON outside the volatile block, no record
    calmod.clear_compile_cache()
    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path / "cache2"))
    res2 = VVUQLoop(twin, DataSplit(data), [Calibrate(draws=300, tune=300, chains=2)], seed=3,
                    out=tmp_path / "b", progress=False, precompile=False).run()
    assert "precompile" not in res2.volatile
    assert res2.objects["calibrate"].info["compile_cache"] == "miss: saved"
    assert {k: v for k, v in res2.summary().items() if k != "volatile"} == \
        {k: v for k, v in res.summary().items() if k != "volatile"}
    # resumed: nothing left to run, nothing precompiled
    calmod.clear_compile_cache()
    res3 = loop.run()
    assert res3.volatile["resumed_steps"] == ["calibrate"] and "precompile" not in res3.volatile
    with pytest.raises(LoopSpecError, match="precompile"):
        VVUQLoop(twin, DataSplit(data), [Calibrate()], precompile="yes")


def test_a_stale_layout_is_compiled_again_not_reported_on_disk(tmp_path, monkeypatch, request):
    """A layout file of another cache format (or unreadable) is no disk hit: precompile compiles
    it again, and the later calibrate loads that fresh compile."""
    if ran_in_a_fresh_process(request, __file__):
        return
    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path))
    calmod.clear_compile_cache()
    job = (make_twin(1.7), make_data())
    (row,) = vt.precompile([job])
    assert row["status"] == "saved"
    (layout,) = tmp_path.glob("layout-*.json")
    stale = json.loads(layout.read_text())
    stale["format"] = -1
    layout.write_text(json.dumps(stale))
    (row,) = vt.precompile([job])
    assert row["status"] == "saved", row  # compiled again, not "disk"
    layout.write_text("{not json")
    (row,) = vt.precompile([job])
    assert row["status"] == "saved", row
    res = vt.calibrate(*job, **KW)
    assert res.info["compile_cache"] == "disk"
    check_known_answer(res, job[1])


def test_collect_children_reports_by_tag_when_pipes_are_reused():
    """A rolling pool of one: every child gets the pipe number its predecessor freed, and each
    tag still gets its own child's report."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    cc = importlib.import_module("vvuq_twin.inference._compile_cache")

    def spawn(tag: str) -> tuple[int, int]:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.write(w, f"report of {tag}".encode())
            os._exit(0)
        os.close(w)
        return pid, r

    queue, pipes = ["b", "c", "d"], []

    def on_done(tag: str, how: str):
        if not queue:
            return []
        nxt = queue.pop(0)
        pid, r = spawn(nxt)
        pipes.append(r)
        return [(nxt, pid, r)]

    pid, r = spawn("a")
    pipes.append(r)
    done = cc._collect_children({"a": (pid, r)}, on_done)
    assert done == {t: f"report of {t}" for t in "abcd"}
    assert len(set(pipes)) < len(pipes)  # pipe numbers were reused: tags, not pipes, key the reports
    with pytest.raises(ValueError, match="given twice"):
        pid, r = spawn("x")
        cc._collect_children({"x": (pid, r)}, lambda tag, how: [("x", *spawn("x"))] if tag == "x" else [])
