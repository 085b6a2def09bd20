"""Every ``>>>`` example in the package's docstrings runs and prints what it shows (doctest).

The examples appear on the API pages of the documentation site; this keeps them true. Examples
that need a calibration or files are marked ``# doctest: +SKIP`` in the docstring itself.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import sys

import pytest

import vvuq_twin

MODULES = sorted(m.name for m in pkgutil.walk_packages(vvuq_twin.__path__, "vvuq_twin.")
                 if not m.name.endswith("__main__"))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _run(modname: str) -> doctest.TestResults:
    importlib.import_module(modname)
    mod = sys.modules[modname]          # the module even where a function shadows its name
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in finder.find(mod, modname):          # globals: a copy of the module namespace
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("modname", ["vvuq_twin", *MODULES])
def test_docstring_examples_run(modname):
    res = _run(modname)
    assert res.failed == 0, f"{res.failed} of {res.attempted} docstring examples failed in {modname}"


def test_a_wrong_example_fails(tmp_path, monkeypatch):
    """The runner can fail: an example whose printed output is wrong is counted as failed."""
    (tmp_path / "vvuq_doctest_probe.py").write_text('"""\n>>> 1 + 1\n3\n"""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    res = _run("vvuq_doctest_probe")
    assert (res.failed, res.attempted) == (1, 1)
