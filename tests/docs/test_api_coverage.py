"""Every name in every public module's ``__all__`` has an API page (docs/_ext/vvuq_apigen.py).

Runs without Sphinx: the generator writes the reST sources into a temporary folder, and the
check reads them back. When the HTML site has been built (``docs/_build/html``), the rendered
pages are checked too.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "docs" / "_ext"))
import vvuq_apigen  # noqa: E402

HTML = REPO / "docs" / "_build" / "html"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    vvuq_apigen.write(out)
    modules, alias, canon = vvuq_apigen.collect()
    return out, modules, alias, canon


def test_every_all_name_has_a_page(api):
    out, modules, alias, _ = api
    assert vvuq_apigen.missing_pages(out) == []
    # the subpackages the README lists are all there, each with its whole __all__
    names = {m.name for m in modules}
    for sub in ("twin", "inference", "verification", "validation", "sensitivity", "surrogates",
                "risk", "decisions", "design", "assimilation", "ensembles", "loop", "operations",
                "report", "suite", "exceptions"):
        mod = importlib.import_module(f"vvuq_twin.{sub}")
        assert f"vvuq_twin.{sub}" in names
        for n in mod.__all__:
            assert (out / "generated" / f"{alias[f'vvuq_twin.{sub}.{n}']}.rst").exists(), n
    n_pages = len(list((out / "generated").glob("*.rst")))
    assert n_pages == len(set(alias.values()))


def test_each_object_is_documented_once_under_its_first_public_module(api):
    out, modules, alias, canon = api
    import vvuq_twin.inference as inf
    cal_mod = importlib.import_module("vvuq_twin.inference.calibrate")  # the module, not the function
    # calibrate is exported by vvuq_twin.inference and vvuq_twin.inference.calibrate: one page
    assert alias["vvuq_twin.inference.calibrate.calibrate"] == "vvuq_twin.inference.calibrate"
    assert canon[id(inf.calibrate)] == "vvuq_twin.inference.calibrate"
    assert cal_mod.calibrate is inf.calibrate
    # the top level resolves to the subpackage page; type hints name the defining module
    assert alias["vvuq_twin.Twin"] == "vvuq_twin.twin.Twin"
    assert vvuq_apigen.canonical_name("vvuq_twin.twin.declaration.Twin", alias, canon) == "vvuq_twin.twin.Twin"
    assert vvuq_apigen.canonical_name("vvuq_twin.twin.declaration.Twin.build_model", alias, canon) \
        == "vvuq_twin.twin.Twin.build_model"
    assert vvuq_apigen.canonical_name("numpy.ndarray", alias, canon) is None
    # a method inherited from a documented base class also resolves to the base's page
    assert "vvuq_twin.twin.ObservationModel.noise_values" in vvuq_apigen.canonical_names(
        "vvuq_twin.twin.observation.Gaussian.noise_values", alias, canon)
    # names that do not exist resolve to nothing (the nitpicky build then fails on them)
    assert vvuq_apigen.canonical_names("vvuq_twin.twin.Twin.no_such_method", alias, canon) == []
    assert not vvuq_apigen.exists("vvuq_twin.twin.no_such_name")
    assert vvuq_apigen.exists("vvuq_twin.inference.ledger.GENESIS")
    assert vvuq_apigen.exists("vvuq_twin.inference.Diagnostics.checks")      # a dataclass field
    assert not vvuq_apigen.exists("vvuq_twin.design.Any")                    # imported from typing
    # two different objects with one short name (design.QoI, loop.QoI) keep two pages
    assert alias["vvuq_twin.design.QoI"] != alias["vvuq_twin.loop.QoI"]
    # the page uses the directive that fits the object
    page = (out / "generated" / "vvuq_twin.inference.calibrate.rst").read_text()
    assert ".. autofunction:: calibrate" in page
    page = (out / "generated" / "vvuq_twin.exceptions.CalibrationError.rst").read_text()
    assert ".. autoexception:: CalibrationError" in page


def test_missing_page_is_reported(api, tmp_path):
    out, *_ = api
    import shutil
    copy = tmp_path / "api"
    shutil.copytree(out, copy)
    (copy / "generated" / "vvuq_twin.twin.Twin.rst").unlink()
    missing = vvuq_apigen.missing_pages(copy)
    # the page, its subpackage export and the top-level re-export are all reported
    assert "vvuq_twin.twin.Twin" in missing and "vvuq_twin.Twin" in missing
    page = copy / "vvuq_twin.twin.declaration.rst"
    if page.exists():
        assert "vvuq_twin.twin.declaration.Twin" in missing


@pytest.mark.skipif(not (HTML / "index.html").exists(), reason="docs site not built (sphinx-build docs docs/_build/html)")
def test_built_site_has_every_api_page(api):
    _, _, alias, _ = api
    absent = [c for c in sorted(set(alias.values())) if not (HTML / "api" / "generated" / f"{c}.html").exists()]
    assert absent == []
