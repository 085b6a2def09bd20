"""A validation suite is declared, not executed: only allow-listed callables run (issue 17, #1).

On the old engine every case below ran its callable (``os:system`` created the marker file and
the case PASSED); here each is refused before anything is imported or run, with an error naming
the file, the case and the rule.
"""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import pytest

from vvuq_twin.suite import (
    SuiteConfigError,
    SuiteRefusedError,
    discover_cases,
    main,
    run_case,
    run_suite,
)

HELPERS = "def half():\n    return 0.5\n"


def _case(target: str, kwargs: str = "{}") -> str:
    return textwrap.dedent(f'''
    [[case]]
    name = "innocent_looking"
    callable = "{target}"
    kwargs = {kwargs}
    threshold = 1e9
    comparison = "<="
    ''')


def _suite(base: Path, case_text: str, *, modules=("helpers_tmp",), helpers=HELPERS) -> Path:
    root = base / "validation_suite"
    (root / "quick").mkdir(parents=True)
    if helpers is not None:
        (root / "helpers_tmp.py").write_text(helpers)
    if modules is not None:
        (root / "suite.toml").write_text(f"[suite]\nmodules = {list(modules)!r}\n".replace("'", '"'))
    (root / "quick" / "c.toml").write_text(case_text)
    return root


@pytest.mark.parametrize("target, kwargs", [
    ("os:system", '{ command = "touch MARKER" }'),
    ("subprocess:run", '{ args = ["touch", "MARKER"] }'),
    ("builtins:exec", '{ source = "open(\'MARKER\', \'w\').close()" }'),
    ("pathlib:Path", '{}'),
    ("shutil:rmtree", '{ path = "MARKER" }'),
])
def test_stdlib_callables_are_refused_before_anything_runs(tmp_path, monkeypatch, capsys,
                                                           target, kwargs):
    monkeypatch.chdir(tmp_path)
    root = _suite(tmp_path, _case(target, kwargs.replace("MARKER", str(tmp_path / "MARKER"))))
    with pytest.raises(SuiteRefusedError) as info:
        discover_cases(root)
    msg = str(info.value)
    assert "case 'innocent_looking'" in msg and f"refused {target!r}" in msg
    assert "a suite may call only public functions of vvuq_twin and case_studies" in msg
    assert str(root / "quick" / "c.toml") in msg
    assert main([str(root)]) == 2  # malformed suite: nothing ran
    assert "refused" in capsys.readouterr().err
    assert not (tmp_path / "MARKER").exists()


def test_module_planted_in_a_parent_directory_is_never_used(tmp_path, capsys):
    marker = tmp_path / "PLANTED_RAN"
    planted = f"open({str(marker)!r}, 'w').close()\ndef half():\n    return 99.0\n"
    project = tmp_path / "project"
    project.mkdir()
    (project / "helpers_tmp.py").write_text(planted)  # above the suite root
    (tmp_path / "helpers_tmp.py").write_text(planted)  # and above that
    # 1. the suite does not declare the module: refused (old engine: walked up and ran it)
    root = _suite(project, _case("helpers_tmp:half"), modules=None, helpers=None)
    with pytest.raises(SuiteRefusedError, match="module 'helpers_tmp' is not allowed"):
        run_suite(root, stream=sys.stderr)
    # 2. declared but not in the suite root: a config error, no search of parent directories
    (root / "suite.toml").write_text('[suite]\nmodules = ["helpers_tmp"]\n')
    with pytest.raises(SuiteConfigError, match="is declared but neither .* exists"):
        run_suite(root, stream=sys.stderr)
    assert not marker.exists()
    # 3. declared and present in the root: the root's copy runs, never the planted one
    (root / "helpers_tmp.py").write_text(HELPERS)
    res = run_suite(root, stream=sys.stderr)
    assert res.results[0].value == 0.5 and not marker.exists()
    # a sub-directory run with the root named explicitly uses the same manifest
    res = run_suite(root / "quick", root=root, stream=sys.stderr)
    assert res.results[0].value == 0.5
    # without the root, the sub-directory declares nothing: refused, not searched upwards
    with pytest.raises(SuiteRefusedError):
        run_suite(root / "quick", stream=sys.stderr)
    assert not marker.exists()


def test_names_imported_into_allowed_modules_and_private_functions_are_refused(tmp_path):
    helpers = "from os import system\nimport subprocess\ndef _hidden():\n    return 1.0\n"
    # a stdlib function re-exported by a local module or by vvuq_twin itself
    for target, why in [("helpers_tmp:system", "not a Python function"),
                        ("vvuq_twin.ensembles:dataclass", "a function of module 'dataclasses'"),
                        ("helpers_tmp:subprocess", "has no function 'subprocess'")]:
        root = _suite(tmp_path / target.replace(":", "_"), _case(target), helpers=helpers)
        (case,) = discover_cases(root)
        r = run_case(case)
        assert r.status == "error" and why in r.message, r.message
    root = _suite(tmp_path / "priv", _case("helpers_tmp:_hidden"), helpers=helpers)
    with pytest.raises(SuiteRefusedError, match="'_hidden' is private"):
        discover_cases(root)
    # command-line and suite modules of vvuq_twin may not be called (they run other things)
    for target in ("vvuq_twin.cli:main", "vvuq_twin.suite:run_suite",
                   "vvuq_twin.testing.faults:crashing_simulator"):
        root = _suite(tmp_path / target.replace(":", "_").replace(".", "_"), _case(target))
        with pytest.raises(SuiteRefusedError, match="may not be called from a suite"):
            discover_cases(root)
    # private modules (vvuq_twin._io writes files, report._env runs git) are refused too
    for target in ("vvuq_twin._io:atomic_write_text", "vvuq_twin.report._env:git_commit"):
        root = _suite(tmp_path / target.replace(":", "_").replace(".", "_"), _case(target))
        with pytest.raises(SuiteRefusedError, match="is private"):
            discover_cases(root)


def test_vvuq_twin_and_case_study_functions_run_without_a_manifest(tmp_path):
    text = textwrap.dedent('''
    [[case]]
    name = "crps_standard_normal_at_its_mean"
    callable = "vvuq_twin.validation.metrics:crps_gaussian"
    kwargs = { mu = 0.0, sigma = 1.0, y = 0.0 }
    target = 0.2336949772
    tolerance = 1e-9
    ''')
    root = _suite(tmp_path, text, modules=None, helpers=None)
    (case,) = discover_cases(root)
    r = run_case(case)
    # CRPS of N(0, 1) at y = 0: 2 phi(0) - 1/sqrt(pi) = sqrt(2/pi) - 1/sqrt(pi)
    assert r.status == "passed", r.message
    assert r.value == pytest.approx((2 / math.pi) ** 0.5 - math.pi ** -0.5, rel=1e-12)


def test_manifest_is_validated(tmp_path):
    root = _suite(tmp_path, _case("helpers_tmp:half"))
    for body, pattern in [
        ('[suite]\nmodules = "helpers_tmp"\n', "must be a list of module names"),
        ('[suite]\nmodules = ["../helpers_tmp"]\n', "must be the plain name of a module file"),
        ('[suite]\nmodules = ["os"]\n', "is declared but neither"),
        ('[suite]\nmodulez = []\n', r"unknown key\(s\) \['modulez'\]"),
        ('[[case]]\nname = "x"\n', "exactly one \\[suite\\] table"),
    ]:
        (root / "suite.toml").write_text(body)
        with pytest.raises(SuiteConfigError, match=pattern):
            discover_cases(root)


def test_help_says_what_a_suite_may_run(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "What a suite may run" in out and "suite.toml" in out and "review it like code" in out


def test_pytest_plugin_refuses_too(tmp_path, capsys, monkeypatch):
    import importlib.metadata

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    root = _suite(tmp_path, _case("os:system", f'{{ command = "touch {marker}" }}'))
    registered = any(ep.value == "vvuq_twin.validation_suite_plugin"
                     for ep in importlib.metadata.entry_points(group="pytest11"))
    extra = [] if registered else ["-p", "vvuq_twin.validation_suite_plugin"]
    code = pytest.main([*extra, "-p", "no:cacheprovider", "-q", str(root)])
    out = capsys.readouterr().out
    assert int(code) != 0 and "refused 'os:system'" in out
    assert not marker.exists()
