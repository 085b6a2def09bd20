"""Sampling overlapped with the next steps' imports (``inference/_overlap.py``, issue #18).

``calibrate`` starts nutpie with ``blocking=False``, does the imports the conversion and the
NetCDF writer would make while the sampler runs, then waits. Known answer: the draws, the
sampler statistics and the posterior predictive are bit-identical to the blocking path
(``VVUQ_TWIN_OVERLAP=0``) at the same seed, and the posterior mean matches the closed form.
Failure cases: a failing step is skipped without failing the calibration; an error from the
sampler cancels it and propagates; KeyboardInterrupt returns the aborted trace as
``nutpie.sample(blocking=True)`` does. No timing is asserted.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import vvuq_twin as vt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _small_twins import check_known_answer, make_data, make_twin  # noqa: E402

ov = importlib.import_module("vvuq_twin.inference._overlap")
KW = dict(draws=300, tune=300, chains=2, rng=9, warn=False)


def _arrays(res):
    out = {}
    for group in ("posterior", "posterior_predictive", "sample_stats"):
        ds = res.idata[group]
        out.update({f"{group}/{v}": np.asarray(ds[v].values) for v in ds.data_vars})
    return out


def test_overlapped_sampling_gives_the_blocking_draws(monkeypatch):
    import nutpie

    twin, data = make_twin(), make_data()
    calls = []
    real = nutpie.sample

    def spy(*a, **k):
        calls.append(k.get("blocking", True))
        return real(*a, **k)

    monkeypatch.setattr(nutpie, "sample", spy)
    monkeypatch.setattr(ov, "DONE", [])
    monkeypatch.setenv("VVUQ_TWIN_OVERLAP", "0")
    blocking = vt.calibrate(twin, data, **KW)
    assert calls == [True] and ov.DONE == []
    monkeypatch.setenv("VVUQ_TWIN_OVERLAP", "1")
    overlapped = vt.calibrate(twin, data, **KW)
    assert calls == [True, False]
    assert "xarray duck-array probe" in ov.DONE
    a, b = _arrays(blocking), _arrays(overlapped)
    assert a.keys() == b.keys() and "posterior/a" in a and "sample_stats/diverging" in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    check_known_answer(overlapped, data)
    # another seed gives other draws: the comparison above can fail
    other = vt.calibrate(twin, data, **{**KW, "rng": 10})
    assert not np.array_equal(_arrays(other)["posterior/a"], a["posterior/a"])


def test_write_steps_only_when_a_write_is_expected(monkeypatch):
    monkeypatch.setattr(ov, "_WRITE_EXPECTED", False)
    base = ["xarray duck-array probe", "import vvuq_twin post-sampling modules"]
    assert [n for n, _ in ov._steps()] == base
    ov.expect_netcdf_write()
    assert [n for n, _ in ov._steps()] == [*base, "import h5netcdf", "import dask.distributed"]
    ov.expect_netcdf_write(False)
    assert [n for n, _ in ov._steps()] == base


def test_every_step_runs_here():
    """The real steps succeed in this environment (h5netcdf and dask are dependencies), and
    afterwards the modules they prefetch are loaded."""
    ov.expect_netcdf_write()
    try:
        for name, step in ov._steps():
            step()
    finally:
        ov.expect_netcdf_write(False)
    for mod in ("h5netcdf", "dask.array", "distributed", "vvuq_twin.domain", "vvuq_twin.inference._fast_predictive"):
        assert mod in sys.modules, mod


def test_a_failing_step_is_skipped_and_each_step_runs_once(monkeypatch):
    runs = []

    def boom():
        runs.append("boom")
        raise ImportError("not installed")

    monkeypatch.setattr(ov, "DONE", [])
    monkeypatch.setattr(ov, "_steps", lambda: [("boom", boom), ("ok", lambda: runs.append("ok"))])
    assert ov.while_sampling() == ["ok"]
    assert ov.while_sampling() == []  # "ok" is done; "boom" is tried again
    assert runs == ["boom", "ok", "boom"] and ov.DONE == ["ok"]


class _FakeSampler:
    def __init__(self, exc=None):
        self.exc, self.log = exc, []

    def wait(self):
        self.log.append("wait")
        if self.exc is not None:
            raise self.exc
        return "trace"

    def abort(self):
        self.log.append("abort")
        return "partial trace"

    def cancel(self):
        self.log.append("cancel")


class _FakeNutpie:
    def __init__(self, sampler):
        self.sampler, self.kwargs = sampler, None

    def sample(self, compiled, **kwargs):
        self.kwargs = kwargs
        return self.sampler


def test_sample_overlapped_waits_cancels_and_aborts_like_nutpie(monkeypatch):
    monkeypatch.setattr(ov, "_steps", lambda: [])
    fake = _FakeNutpie(_FakeSampler())
    trace, rec = ov.sample_overlapped(fake, object(), draws=5, seed=1)
    assert trace == "trace" and fake.kwargs == {"blocking": False, "draws": 5, "seed": 1}
    assert fake.sampler.log == ["wait"] and rec["steps"] == []
    failing = _FakeNutpie(_FakeSampler(RuntimeError("logp is nan")))
    with pytest.raises(RuntimeError, match="logp is nan"):
        ov.sample_overlapped(failing, object())
    assert failing.sampler.log == ["wait", "cancel"]
    interrupted = _FakeNutpie(_FakeSampler(KeyboardInterrupt()))
    trace, _ = ov.sample_overlapped(interrupted, object())
    assert trace == "partial trace" and interrupted.sampler.log == ["wait", "abort"]


def test_overlap_switch(monkeypatch):
    monkeypatch.delenv("VVUQ_TWIN_OVERLAP", raising=False)
    assert ov.overlap_enabled()
    for off in ("0", "false", "OFF", "no"):
        monkeypatch.setenv("VVUQ_TWIN_OVERLAP", off)
        assert not ov.overlap_enabled()
