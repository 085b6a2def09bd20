"""Tests of the validation-suite engine (vvuq_twin.suite) and its pytest plugin."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vvuq_twin.suite import (
    CASE_KEYS,
    SuiteConfigError,
    discover_cases,
    load_case_file,
    main,
    run_suite,
)

ROOT = Path(__file__).resolve().parents[2]
PROJECT_SUITE = ROOT / "validation_suite"

HELPERS = '''
import numpy as np

def half():
    return 0.5

def stats(seed=0):
    rng = np.random.default_rng(seed)
    return {"mean": float(rng.normal(size=1000).mean()), "one": 1.0}

def boom():
    raise RuntimeError("simulator exploded")

def gaussian(n=500, sd=1.0, seed=1):
    rng = np.random.default_rng(seed)
    return sd * rng.normal(size=(1000, n)), rng.normal(size=n)
'''

GOOD = '''
[[case]]
name = "half_is_half"
callable = "helpers_tmp:half"
target = 0.5
tolerance = 1e-12

[[case]]
name = "mean_near_zero"
tier = "quick"
callable = "helpers_tmp:stats"
kwargs = { seed = 3 }
metric = "mean"
threshold = 0.15
comparison = "<="

[[case]]
name = "coverage_ok"
predictive = "helpers_tmp:gaussian"
metric = "coverage"
metric_kwargs = { prob = 0.8 }
target = 0.8
tolerance = 0.06

[[case]]
name = "full_only"
tier = "full"
callable = "helpers_tmp:half"
threshold = 0.4
comparison = ">"
'''

BAD = '''
[[case]]
name = "half_is_not_one"
callable = "helpers_tmp:half"
threshold = 1.0
comparison = ">="

[[case]]
name = "raises"
callable = "helpers_tmp:boom"
threshold = 0.0
comparison = ">"
'''


def _suite(tmp_path: Path, **files: str) -> Path:
    root = tmp_path / "validation_suite"
    (root / "quick").mkdir(parents=True)
    (root / "helpers_tmp.py").write_text(HELPERS)
    (root / "suite.toml").write_text('[suite]\nmodules = ["helpers_tmp"]\n')
    for name, text in files.items():
        (root / "quick" / f"{name}.toml").write_text(textwrap.dedent(text))
    return root


# ------------------------------------------------------------------------------- the runner
def test_project_quick_suite_passes(tmp_path, capsys):
    # the module cases; the case-study runs (validation_suite/case_studies/, several minutes on
    # the real data) are run by CI through `vvuq-twin validate validation_suite --tier quick`
    res = run_suite(PROJECT_SUITE / "quick", tier="quick", junit=tmp_path / "out.xml",
                    root=PROJECT_SUITE)
    assert res.ok, res.summary_table()
    assert len(res.results) >= 10
    assert all(r.case.tier == "quick" for r in res.results)
    assert "passed, 0 failed, 0 errors" in capsys.readouterr().out
    tree = ET.parse(tmp_path / "out.xml")
    suite = tree.getroot().find("testsuite")
    assert int(suite.get("tests")) == len(res.results) and suite.get("failures") == "0"


def test_tiers_select_cases(tmp_path):
    root = _suite(tmp_path, good=GOOD)
    quick = [c.name for c in discover_cases(root, "quick")]
    full = [c.name for c in discover_cases(root, "full")]
    assert "full_only" not in quick and "full_only" in full and len(full) == 4
    res = run_suite(root, tier="full", stream=sys.stderr)
    assert res.ok and res.n_passed == 4
    assert {r.case.name: r.value for r in res.results}["half_is_half"] == 0.5


def test_failures_and_errors_reported_in_junit_and_exit_code(tmp_path, capsys):
    root = _suite(tmp_path, good=GOOD, bad=BAD)
    out = tmp_path / "junit.xml"
    code = main([str(root), "--tier", "quick", "--junit", str(out)])
    assert code == 1
    text = capsys.readouterr().out
    assert "FAILED half_is_not_one" in text and "value = 0.5 does not satisfy >= 1" in text
    assert "ERROR raises" in text and "simulator exploded" in text
    assert "3 passed, 1 failed, 1 errors" in text
    xml = ET.parse(out).getroot()
    cases = {tc.get("name"): tc for tc in xml.iter("testcase")}
    assert cases["half_is_not_one"].find("failure") is not None
    err = cases["raises"].find("error")
    assert err is not None and "RuntimeError" in err.get("message")
    assert cases["half_is_half"].find("failure") is None
    assert xml.get("failures") == "1" and xml.get("errors") == "1"
    # selecting only passing cases gives exit 0
    assert main([str(root), "-k", "half_is_half"]) == 0


def test_mapping_without_metric_errors_with_keys(tmp_path):
    root = _suite(tmp_path, m='''
    [[case]]
    name = "needs_metric"
    callable = "helpers_tmp:stats"
    threshold = 1.0
    comparison = "<"
    ''')
    res = run_suite(root, stream=sys.stderr)
    (r,) = res.results
    assert r.status == "error" and "keys ['mean', 'one']" in r.message


# ----------------------------------------------------------------------------- bad configs
@pytest.mark.parametrize(
    "body, pattern",
    [
        ('name = "a"\ncallable = "m:f"\nthreshhold = 1.0\ncomparison = "<"',
         r"case 'a': unknown key\(s\) \['threshhold'\]\. Valid keys are: name, description"),
        ('name = "a"\ncallable = "m:f"',
         r"case 'a': missing acceptance threshold: add 'threshold' and 'comparison'"),
        ('name = "a"\ncallable = "m:f"\nthreshold = 1.0',
         r"key 'comparison' is missing or invalid \(None\); it must be one of \['<', '<='"),
        ('name = "a"\ncallable = "m:f"\nthreshold = 1.0\ncomparison = "=<"',
         r"invalid \('=<'\)"),
        ('name = "a"\ncallable = "m:f"\ntarget = 1.0',
         r"key 'target' needs key 'tolerance'"),
        ('name = "a"\ncallable = "m:f"\ntier = "nightly"\nthreshold = 1\ncomparison = "<"',
         r"key 'tier' must be one of \['quick', 'full'\], got 'nightly'"),
        ('name = "a"\ncallable = "no_colon"\nthreshold = 1\ncomparison = "<"',
         r"must look like \"module:function\""),
        ('name = "a"\npredictive = "m:f"\nmetric = "rmse"\nthreshold = 1\ncomparison = "<"',
         r"needs key 'metric' set to one of \['area_u_pooling', 'coverage'"),
        ('callable = "m:f"\nthreshold = 1\ncomparison = "<"',
         r"case #1: missing required key 'name'"),
        ('name = "a"\ncallable = "m:f"\nthreshold = "low"\ncomparison = "<"',
         r"key 'threshold' must be a finite number, got 'low'"),
    ],
)
def test_bad_case_files_name_file_key_and_fix(tmp_path, body, pattern):
    f = tmp_path / "bad_case.toml"
    f.write_text("[[case]]\n" + body + "\n")
    with pytest.raises(SuiteConfigError, match=pattern) as info:
        load_case_file(f)
    assert str(f) in str(info.value)


def test_bad_top_level_and_duplicates(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[suite]\nname = "x"\n')
    with pytest.raises(SuiteConfigError, match=r"unknown top-level key\(s\) \['suite'\]"):
        load_case_file(f)
    f.write_text('[[case]]\nname = "a"\ncallable = "m:f"\nthreshold = 1\ncomparison = "<"\n' * 2)
    with pytest.raises(SuiteConfigError, match=r"duplicate case name\(s\) \['a'\]"):
        load_case_file(f)
    f.write_text("[[case]\nname = 1")
    with pytest.raises(SuiteConfigError, match="not valid TOML"):
        load_case_file(f)
    assert set(CASE_KEYS) >= {"name", "tier", "threshold", "comparison", "metric"}


def test_main_returns_2_for_malformed_suite(tmp_path, capsys):
    root = _suite(tmp_path, bad='[[case]]\nname = "a"\ncallable = "helpers_tmp:half"\n')
    assert main([str(root)]) == 2
    assert "missing acceptance threshold" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere")]) == 2


def test_unknown_module_or_function_is_an_error_case(tmp_path):
    root = _suite(tmp_path, m='''
    [[case]]
    name = "nofunc"
    callable = "helpers_tmp:does_not_exist"
    threshold = 1.0
    comparison = "<"
    ''')
    (r,) = run_suite(root, stream=sys.stderr).results
    assert r.status == "error" and "has no function 'does_not_exist'" in r.message


# ------------------------------------------------------------------------------ the plugin
def _run_pytest(args, capsys):
    """Run pytest in-process with the plugin (by its entry point, or named with -p)."""
    registered = any(ep.value == "vvuq_twin.validation_suite_plugin"
                     for ep in importlib.metadata.entry_points(group="pytest11"))
    extra = [] if registered else ["-p", "vvuq_twin.validation_suite_plugin"]
    code = pytest.main([*extra, "-p", "no:cacheprovider", "-q", *map(str, args)])
    return int(code), capsys.readouterr().out


def test_pytest_plugin_runs_cases_as_items(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = _suite(tmp_path, good=GOOD, bad=BAD)
    junit = tmp_path / "pytest.xml"
    code, out = _run_pytest([root, "--vvuq-tier", "quick", f"--junitxml={junit}", "-rs"],
                            capsys)
    assert code == 1, out
    assert "2 failed, 3 passed, 1 skipped" in out
    assert "validation case 'half_is_not_one' failed: value = 0.5 does not satisfy >= 1" in out
    assert "validation case 'raises' error: RuntimeError: simulator exploded" in out
    assert "run with --vvuq-tier full" in out
    names = {tc.get("name") for tc in ET.parse(junit).getroot().iter("testcase")}
    assert {"half_is_half", "mean_near_zero", "coverage_ok", "half_is_not_one", "raises",
            "full_only"} == names


def test_pytest_plugin_full_tier_and_ignores_other_toml(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = _suite(tmp_path, good=GOOD)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.toml").write_text("not = 'a case'\n")
    code, out = _run_pytest([root, tmp_path / "elsewhere", "--vvuq-tier", "full"], capsys)
    assert code == 0, out
    assert "4 passed" in out


def test_pytest_plugin_reports_malformed_case_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = _suite(tmp_path, bad='[[case]]\nname = "a"\ncallable = "m:f"\nmetrc = 1\n')
    code, out = _run_pytest([root], capsys)
    assert code != 0
    assert "unknown key(s) ['metrc']" in out and "1 error" in out


def test_same_module_name_in_two_suites_does_not_shadow(tmp_path):
    case = '[[case]]\nname = "v"\ncallable = "helpers_tmp:value"\ntarget = {v}\ntolerance = 0\n'
    for v in (1, 2):
        d = tmp_path / f"s{v}" / "validation_suite"
        d.mkdir(parents=True)
        (d / "helpers_tmp.py").write_text(f"def value():\n    return {v}\n")
        (d / "suite.toml").write_text('[suite]\nmodules = ["helpers_tmp"]\n')
        (d / "c.toml").write_text(case.format(v=v))
        res = run_suite(d, stream=sys.stderr)
        assert res.ok and res.results[0].value == v


# --------------------------------------------------------------- issue 20: any directory, shared predictive
def test_pytest_plugin_collects_a_directory_named_on_the_command_line(tmp_path, capsys, monkeypatch):
    # a suite in a directory not called validation_suite used to be silently ignored
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "my_suite"
    (root / "deep").mkdir(parents=True)
    (root / "helpers_tmp.py").write_text(HELPERS)
    (root / "suite.toml").write_text('[suite]\nmodules = ["helpers_tmp"]\n')  # declared local module
    (root / "deep" / "good.toml").write_text(textwrap.dedent(GOOD))
    (root / "settings.toml").write_text("not = 'a case'\n")  # other TOML there: left alone
    code, out = _run_pytest([root], capsys)
    assert code == 0, out
    assert "3 passed, 1 skipped" in out


def test_pytest_plugin_ini_option_names_paths(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "checks" / "twin_cases"
    root.mkdir(parents=True)
    (root / "helpers_tmp.py").write_text(HELPERS)
    (root / "suite.toml").write_text('[suite]\nmodules = ["helpers_tmp"]\n')
    (root / "good.toml").write_text(textwrap.dedent(GOOD))
    (tmp_path / "pytest.ini").write_text("[pytest]\nvvuq_suite_dirs =\n    checks/twin_cases\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_nothing.py").write_text("def test_ok():\n    pass\n")
    code, out = _run_pytest([tmp_path], capsys)  # the whole project, suite dir configured
    assert code == 0, out
    assert "4 passed, 1 skipped" in out


def test_predictive_cases_share_one_predictive(tmp_path):
    counter = tmp_path / "calls.txt"
    helpers = HELPERS + f'''

def counted(n=200, seed=1):
    with open({str(counter)!r}, "a") as fh:
        fh.write("x")
    return gaussian(n=n, seed=seed)
'''
    cases = "".join(
        f'[[case]]\nname = "{m}"\npredictive = "helpers_tmp:counted"\nkwargs = {{ seed = 5 }}\n'
        f'metric = "{m}"\nthreshold = 1e9\ncomparison = "<"\n\n'
        for m in ("crps", "coverage", "pit_ks_pvalue"))
    root = tmp_path / "validation_suite"
    root.mkdir()
    (root / "helpers_tmp.py").write_text(helpers)
    (root / "suite.toml").write_text('[suite]\nmodules = ["helpers_tmp"]\n')  # declared local module
    (root / "c.toml").write_text(cases)
    res = run_suite(root, stream=sys.stderr, progressbar=False)
    assert res.ok and len(res.results) == 3
    assert counter.read_text() == "x"  # one predict for three metrics


KNOWN = '''
[[case]]
name = "known_bad"
callable = "helpers_tmp:half"
threshold = 1.0
comparison = ">="
known_failure = "issue #15: half is not one yet"

[[case]]
name = "known_but_fixed"
callable = "helpers_tmp:half"
target = 0.5
tolerance = 1e-12
known_failure = "issue #15: was broken once"
'''


def test_known_failures_are_reported_and_strict(tmp_path, capsys):
    root = _suite(tmp_path, known=KNOWN)
    out = tmp_path / "junit.xml"
    # a known failure that fails is reported (with its reason) and does not fail the suite; a
    # known failure that passes fails it (the mark must go)
    assert main([str(root), "-k", "known_bad", "--junit", str(out)]) == 0
    text = capsys.readouterr().out
    assert "KNOWN FAILURE known_bad" in text and "issue #15: half is not one yet" in text
    assert "0 passed, 0 failed, 0 errors, 1 known failures" in text
    skipped = ET.parse(out).getroot().find("testsuite/testcase/skipped")
    assert skipped is not None and skipped.get("type") == "KnownFailure"
    assert main([str(root)]) == 1
    text = capsys.readouterr().out
    assert "FAILED known_but_fixed" in text and "remove the mark" in text
    code, out_ = _run_pytest([root, "--vvuq-tier", "quick", "-rxs"], capsys)
    assert code == 1 and "1 failed, 1 xfailed" in out_, out_


@pytest.mark.parametrize("reason", ["", "todo", 3])
def test_known_failure_needs_a_reason(tmp_path, reason):
    root = _suite(tmp_path, k=f'''
[[case]]
name = "k"
callable = "helpers_tmp:half"
threshold = 1.0
comparison = ">="
known_failure = {reason!r}
'''.replace("'", '"'))
    with pytest.raises(SuiteConfigError, match="known_failure"):
        discover_cases(root, "quick")
