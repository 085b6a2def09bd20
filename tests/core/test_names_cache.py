"""The declaration's name check across processes (issue #18: the warm README job).

``Twin(...)`` derives the names the model builder creates by building the model on a probe data
set (three PyMC builds, a few tenths of a second). The names are kept on disk beside the compile
cache under a key of the declaration hash and the builder's source; a new process reads them
instead of building. Known answers: the names read back are the names the builder creates (the
probe builds of this process, and the real model); a clash is still found (it is never stored);
a damaged file, another builder source or the switch off all fall back to building.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import vvuq_twin as vt
import vvuq_twin.twin._names as names_mod
from vvuq_twin.exceptions import TwinSpecificationError
from vvuq_twin.inference import _compile_cache as cc
from vvuq_twin.testing.problems_core import bo2014_data, bo2014_twin

ROOT = Path(__file__).resolve().parents[2]


def _lin():
    return vt.PytensorSimulator(lambda X, p: p["a"] * X[:, 0], name="lin")


def _hier_twin():
    """A hierarchical twin with a marginalised GP (also declared by the subprocess test)."""
    return vt.Twin("names_cache_h", _lin(),
                   [vt.Parameter("a", vt.NormalPrior(0, 1), per_unit=True)],
                   discrepancy=vt.GPDiscrepancy(ls=vt.LogNormal(0.0, 1.0), eta=vt.HalfNormal(1.0)),
                   hierarchy=vt.Hierarchy(), observation=vt.GaussianObs(sigma=vt.HalfNormal(1.0)))


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("VVUQ_TWIN_COMPILE_CACHE", raising=False)
    monkeypatch.setattr(names_mod, "_CACHE", {})
    return tmp_path


def _no_builds(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the probe models were built although the names were on disk")

    monkeypatch.setattr(names_mod, "_build_all", boom)


def test_names_are_read_back_from_disk_without_building(cache, monkeypatch):
    twin = _hier_twin()  # declared: probe builds, names saved
    built = names_mod.builder_names(twin)
    files = list(cache.glob("names-*.json"))
    assert len(files) == 1
    assert {"a_mu", "a_sigma", "a_z", "delta_ls", "delta_eta", "sigma_obs", "y_observed",
            "eta_new", "a_z_new", "a_new"} <= built
    # as a new process: nothing in memory, no model may be built
    monkeypatch.setattr(names_mod, "_CACHE", {})
    _no_builds(monkeypatch)
    again = _hier_twin()
    assert names_mod.builder_names(again) == built


def test_names_from_disk_are_those_of_the_real_model(cache, monkeypatch):
    twin, data = bo2014_twin(), bo2014_data(seed=1)
    monkeypatch.setattr(names_mod, "_CACHE", {})
    _no_builds(monkeypatch)
    stored = names_mod.builder_names(twin)  # from the file the declaration wrote
    real = set(map(str, twin.build_model(data).named_vars)) - set(twin.parameter_names)
    assert real <= stored
    assert {"delta_ls", "delta_eta", "y_observed", "eta_new", "zeta_new", "y_new"} <= stored


def test_a_clash_is_found_with_a_warm_cache_and_is_never_stored(cache, monkeypatch):
    _hier_twin()
    before = set(cache.glob("names-*.json"))
    for other in ("a_mu", "delta_ls", "y_new"):
        with pytest.raises(TwinSpecificationError, match=rf"'{other}' is reserved"):
            vt.Twin("names_cache_h", _lin(),
                    [vt.Parameter("a", vt.NormalPrior(0, 1), per_unit=True),
                     vt.Parameter(other, vt.NormalPrior(0, 1))],
                    discrepancy=vt.GPDiscrepancy(ls=vt.LogNormal(0.0, 1.0), eta=vt.HalfNormal(1.0)),
                    hierarchy=vt.Hierarchy(), observation=vt.GaussianObs(sigma=vt.HalfNormal(1.0)))
    assert set(cache.glob("names-*.json")) == before


def test_a_damaged_or_foreign_file_is_rebuilt(cache, monkeypatch):
    twin = _hier_twin()
    built = names_mod.builder_names(twin)
    path = names_mod._disk_path(twin.hash, twin)
    for bad in ("{not json", '{"declaration": "another", "names": ["x"]}', '["a_mu"]'):
        path.write_text(bad)
        monkeypatch.setattr(names_mod, "_CACHE", {})
        assert names_mod.builder_names(twin) == built  # built again, not the file's content
        assert names_mod._load(twin.hash, twin) == built  # and the good file written back


def test_the_key_follows_the_builder_source_and_the_switch(cache, monkeypatch):
    twin = _hier_twin()
    path = names_mod._disk_path(twin.hash, twin)
    assert path.exists()
    monkeypatch.setattr(names_mod, "_STAMP", ["another builder source"])
    assert names_mod._disk_path(twin.hash, twin) != path  # edited builder code: another key
    assert names_mod._load(twin.hash, twin) is None
    monkeypatch.setattr(names_mod, "_STAMP", [])
    assert names_mod._disk_path(twin.hash, twin) == path  # recomputed from the source: same key
    # switched off: nothing read, nothing written
    monkeypatch.setenv("VVUQ_TWIN_COMPILE_CACHE", "0")
    monkeypatch.setattr(names_mod, "_CACHE", {})
    for f in cache.glob("names-*.json"):
        f.unlink()
    names_mod.builder_names(twin)
    assert not list(cache.glob("names-*.json"))


def test_the_names_live_in_the_compile_cache_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("VVUQ_TWIN_CACHE_DIR", str(tmp_path / "c"))
    assert names_mod.cache_dir() == cc.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("VVUQ_TWIN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert names_mod.cache_dir() == cc.cache_dir() == tmp_path / "xdg" / "vvuq_twin" / "compiled"


def test_a_new_process_declares_the_twin_without_building(cache):
    _hier_twin()
    # the same declaration (same simulator source file, so the same hash) in a new process
    code = ("import importlib.util, vvuq_twin.twin._names as n\n"
            "def boom(*a, **k):\n    raise SystemExit('probe build in the second process')\n"
            "n._build_all = boom\n"
            f"spec = importlib.util.spec_from_file_location('names_cache_test', {__file__!r})\n"
            "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
            "print(sorted(n.builder_names(mod._hier_twin())))\n")
    env = {**os.environ, "VVUQ_TWIN_CACHE_DIR": str(cache),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(sorted(names_mod.builder_names(_hier_twin())))


class _MyObs(vt.GaussianObs):
    """A user's own observation model, defined outside vvuq_twin.twin (here, in this file)."""


def test_the_key_follows_the_source_of_a_users_own_component(cache, monkeypatch):
    twin = vt.Twin("names_cache_user", _lin(), [vt.Parameter("a", vt.NormalPrior(0, 1))],
                   observation=_MyObs(sigma=vt.HalfNormal(1.0)))
    path = names_mod._disk_path(twin.hash, twin)
    assert path.exists() and names_mod._load(twin.hash, twin) == names_mod.builder_names(twin)
    here = str(Path(__file__).resolve())
    assert here in names_mod._FILE_HASHES  # this file's source is part of the key
    monkeypatch.setitem(names_mod._FILE_HASHES, here, "edited")  # as if the class were edited
    assert names_mod._disk_path(twin.hash, twin) != path
    assert names_mod._load(twin.hash, twin) is None  # built again, not read
    plain = vt.Twin("names_cache_user", _lin(), [vt.Parameter("a", vt.NormalPrior(0, 1))],
                    observation=vt.GaussianObs(sigma=vt.HalfNormal(1.0)))
    assert names_mod._component_sources(plain) == names_mod._component_sources(_hier_twin())
