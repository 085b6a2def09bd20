"""Validation-suite engine: declarative TOML cases, a runner, a summary table and JUnit XML.

A suite is a directory of ``*.toml`` case files (any depth). Each file holds one or more
``[[case]]`` tables::

    [[case]]
    name = "crps_sample_matches_gaussian_closed_form"
    description = "Fair sample CRPS of N(0.3, 1.2) at y = 1 against the closed form"
    tier = "quick"                                  # "quick" (every commit) or "full" (release)
    callable = "cases_validation:crps_closed_form"  # module:function returning the quantity
    kwargs = { n_samples = 20000, seed = 1 }        # keyword arguments of the function
    metric = "abs_error"                            # key when the function returns a mapping
    threshold = 0.01                                # acceptance: value <comparison> threshold
    comparison = "<="

or, instead of ``callable``, ``predictive = "module:function"`` returning ``(predictive,
observed)`` (a twin's predictive samples and data) with ``metric`` one of the built-in metric
names (:data:`PREDICTIVE_METRICS`), e.g. ``"coverage"`` with ``metric_kwargs = {prob = 0.9}``.
Instead of ``threshold`` + ``comparison`` a case may give ``target`` + ``tolerance``
(pass when ``|value - target| <= tolerance``).

What a suite may run
--------------------
A suite is declared, not executed: a case may name only

* public functions of :mod:`vvuq_twin` (except the command-line and suite-runner modules
  :data:`DENIED_MODULES`) and of the ``case_studies`` package, and
* public functions of the *local modules* that the suite root declares in its manifest
  ``<root>/suite.toml``::

      [suite]
      modules = ["cases_validation", "cases_modules"]   # <root>/cases_validation.py, ...

  Local modules are loaded only from the suite root itself (``<root>/<name>.py`` or a package
  ``<root>/<name>/``), never from a parent directory, the working directory or ``sys.path``.

Anything else - the standard library (``os:system``, ``subprocess:run``, ``builtins:exec``),
other installed packages, a module planted in a parent directory, a private ``_function``, or a
name that a module merely imports from elsewhere - is refused with
:class:`SuiteRefusedError` naming the file, the case and the rule. Keyword arguments come from
TOML, so they are plain data. A suite with local modules is code and must be reviewed like code;
a suite without them runs only vvuq_twin and case-study functions. The suite root is the
directory passed to :func:`run_suite` (``root=`` / ``--root`` when running a sub-directory or one
file); the pytest plugin uses the directory named ``validation_suite``.

``run_suite(path, tier="quick")`` runs the quick tier; ``tier="full"`` runs every case.
:func:`main` is the ``vvuq-twin validate`` command line.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import math
import operator
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from .validation._errors import SuiteConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

__all__ = [
    "TIERS",
    "CASE_KEYS",
    "COMPARISONS",
    "PREDICTIVE_METRICS",
    "Case",
    "CaseResult",
    "SuiteResult",
    "SuiteConfigError",
    "SuiteRefusedError",
    "ALLOWED_PACKAGES",
    "DENIED_MODULES",
    "MANIFEST",
    "read_manifest",
    "suite_root_for",
    "load_case_file",
    "discover_cases",
    "run_case",
    "run_suite",
    "main",
]

TIERS: tuple[str, ...] = ("quick", "full")
CASE_KEYS: tuple[str, ...] = (
    "name", "description", "tier", "callable", "predictive", "kwargs", "metric",
    "metric_kwargs", "threshold", "comparison", "target", "tolerance", "known_failure",
)
FILE_KEYS: tuple[str, ...] = ("case",)
#: file name of the suite manifest at the suite root (holds only a ``[suite]`` table)
MANIFEST = "suite.toml"
MANIFEST_KEYS: tuple[str, ...] = ("modules", "description")
#: packages whose public functions any suite may call
ALLOWED_PACKAGES: tuple[str, ...] = ("vvuq_twin", "case_studies")
#: modules of the allowed packages a suite may not call (they run commands or other suites)
DENIED_MODULES: tuple[str, ...] = (
    "vvuq_twin.cli", "vvuq_twin.__main__", "vvuq_twin.suite", "vvuq_twin.validation_suite_plugin",
    "vvuq_twin.testing.faults",
)
_LOCAL_PREFIX = "_vvuq_suite_local_"
from .exceptions import SuiteRefusedError  # noqa: E402 - re-exported


COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}


def _metric_mean_crps(pred: Any, obs: Any, **kw: Any) -> float:
    from .validation.metrics import crps

    return float(crps(pred, obs, **kw).mean())


def _metric_coverage(pred: Any, obs: Any, **kw: Any) -> float:
    from .validation.metrics import interval_coverage

    return float(interval_coverage(pred, obs, **kw)["coverage"])


def _metric_coverage_p(pred: Any, obs: Any, **kw: Any) -> float:
    from .validation.metrics import interval_coverage

    return float(interval_coverage(pred, obs, **kw)["p_value"])


def _metric_pit_ks_p(pred: Any, obs: Any, **kw: Any) -> float:
    from .validation.metrics import pit, pit_uniformity

    sd = {k: kw.pop(k) for k in ("sample_dims",) if k in kw}
    return float(pit_uniformity(pit(pred, obs, **sd), method="ks", **kw).p_value)


def _metric_area_u(pred: Any, obs: Any, **kw: Any) -> float:
    from .validation.metrics import area_metric_u_pooling, pit

    return area_metric_u_pooling(pit(pred, obs, **kw))


def _metric_ppc_p(pred: Any, obs: Any, **kw: Any) -> float:
    from .validation.metrics import ppc_pvalue

    return float(ppc_pvalue(pred, obs, **kw)["p_value"])


PREDICTIVE_METRICS: dict[str, Callable[..., float]] = {
    "crps": _metric_mean_crps,
    "coverage": _metric_coverage,
    "coverage_pvalue": _metric_coverage_p,
    "pit_ks_pvalue": _metric_pit_ks_p,
    "area_u_pooling": _metric_area_u,
    "ppc_pvalue": _metric_ppc_p,
}


# --------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One validated, declarative validation case (see the module docstring for the keys)."""

    name: str
    file: Path
    tier: str
    target_kind: str  # "callable" or "predictive"
    target: str  # "module:function"
    metric: str | None
    kwargs: dict = field(default_factory=dict)
    metric_kwargs: dict = field(default_factory=dict)
    threshold: float | None = None
    comparison: str | None = None
    target_value: float | None = None
    tolerance: float | None = None
    description: str = ""
    suite_root: Path | None = None
    local_modules: tuple[str, ...] = ()
    known_failure: str | None = None

    @property
    def criterion(self) -> str:
        """Acceptance criterion in words, e.g. ``"<= 0.01"`` or ``"== 1 ± 0.05"``."""
        if self.threshold is not None:
            return f"{self.comparison} {self.threshold:g}"
        return f"{self.target_value:g} ± {self.tolerance:g}"

    def accepts(self, value: float) -> bool:
        """Whether ``value`` meets the acceptance criterion."""
        if not math.isfinite(value):
            return False
        if self.threshold is not None:
            return bool(COMPARISONS[self.comparison](value, self.threshold))  # type: ignore[index]
        return abs(value - self.target_value) <= self.tolerance  # type: ignore[operator]


def _err(file: Path, msg: str) -> SuiteConfigError:
    return SuiteConfigError(f"{file}: {msg}")


def _number(file: Path, where: str, key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _err(file, f"{where}: key {key!r} must be a finite number, got {v!r}.")
    return float(v)


def _rule(root: Path | None) -> str:
    where = f"{root / MANIFEST}" if root is not None else f"the suite root's {MANIFEST}"
    return (f"a suite may call only public functions of {' and '.join(ALLOWED_PACKAGES)} and of the "
            f"local modules declared in {where} ([suite] modules = [...], files in the suite root "
            "itself); the standard library, other installed packages and modules in parent "
            "directories are never callable")


def _check_allowed(file: Path, where: str, target: str, root: Path | None,
                   local: tuple[str, ...]) -> None:
    """Refuse a target outside the allow-list, before anything is imported."""
    mod_name, func_name = target.split(":")
    parts = mod_name.split(".")
    top = parts[0]
    if not all(p.isidentifier() for p in parts) or not func_name.isidentifier():
        raise SuiteRefusedError(f"{file}: {where}: refused {target!r}: module and function must "
                                "be Python identifiers.")
    if func_name.startswith("_"):
        raise SuiteRefusedError(f"{file}: {where}: refused {target!r}: {func_name!r} is private; "
                                f"{_rule(root)}.")
    if any(p.startswith("_") for p in parts):
        raise SuiteRefusedError(f"{file}: {where}: refused {target!r}: module {mod_name!r} is "
                                f"private; {_rule(root)}.")
    if top in ALLOWED_PACKAGES:
        if any(mod_name == d or mod_name.startswith(d + ".") for d in DENIED_MODULES):
            raise SuiteRefusedError(
                f"{file}: {where}: refused {target!r}: module {mod_name!r} runs commands or other "
                f"suites and may not be called from a suite (denied: {list(DENIED_MODULES)}).")
        return
    if top in local:
        return
    raise SuiteRefusedError(
        f"{file}: {where}: refused {target!r}: module {top!r} is not allowed: {_rule(root)}. "
        f"To call a module of your own, put {top}.py in the suite root and declare it there; it "
        "is then code, to be reviewed like code."
    )


def _parse_case(file: Path, raw: Any, index: int, root: Path | None = None,
                local: tuple[str, ...] = ()) -> Case:
    where = f"case #{index + 1}"
    if not isinstance(raw, Mapping):
        raise _err(file, f"{where} must be a table ([[case]]), got {type(raw).__name__}.")
    if "name" in raw and isinstance(raw["name"], str):
        where = f"case {raw['name']!r}"
    unknown = sorted(set(raw) - set(CASE_KEYS))
    if unknown:
        raise _err(
            file,
            f"{where}: unknown key(s) {unknown}. Valid keys are: {', '.join(CASE_KEYS)}.",
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _err(file, f"{where}: missing required key 'name' (a non-empty string).")
    tier = raw.get("tier", "quick")
    if tier not in TIERS:
        raise _err(file, f"{where}: key 'tier' must be one of {list(TIERS)}, got {tier!r}.")
    kinds = [k for k in ("callable", "predictive") if k in raw]
    if len(kinds) != 1:
        raise _err(
            file,
            f"{where}: give exactly one of 'callable' (\"module:function\" returning the "
            "quantity) or 'predictive' (\"module:function\" returning (predictive, observed)); "
            f"got {kinds or 'neither'}.",
        )
    kind = kinds[0]
    target = raw[kind]
    if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
        raise _err(file, f"{where}: key {kind!r} must look like \"module:function\", got "
                         f"{target!r}.")
    metric = raw.get("metric")
    if metric is not None and not isinstance(metric, str):
        raise _err(file, f"{where}: key 'metric' must be a string, got {metric!r}.")
    if kind == "predictive":
        if metric not in PREDICTIVE_METRICS:
            raise _err(
                file,
                f"{where}: a 'predictive' case needs key 'metric' set to one of "
                f"{sorted(PREDICTIVE_METRICS)}, got {metric!r}.",
            )
    for key in ("kwargs", "metric_kwargs"):
        if key in raw and not isinstance(raw[key], Mapping):
            raise _err(file, f"{where}: key {key!r} must be a table, got {raw[key]!r}.")
    has_thr = "threshold" in raw
    has_tgt = "target" in raw
    if has_thr and has_tgt:
        raise _err(file, f"{where}: give either 'threshold' + 'comparison' or 'target' + "
                         "'tolerance', not both.")
    threshold = comparison = target_value = tolerance = None
    if has_thr:
        threshold = _number(file, where, "threshold", raw["threshold"])
        comparison = raw.get("comparison")
        if comparison not in COMPARISONS:
            raise _err(
                file,
                f"{where}: key 'comparison' is missing or invalid ({comparison!r}); it must be "
                f"one of {list(COMPARISONS)} (the case passes when value <comparison> "
                "threshold).",
            )
    elif has_tgt:
        target_value = _number(file, where, "target", raw["target"])
        if "tolerance" not in raw:
            raise _err(file, f"{where}: key 'target' needs key 'tolerance' (>= 0).")
        tolerance = _number(file, where, "tolerance", raw["tolerance"])
        if tolerance < 0:
            raise _err(file, f"{where}: key 'tolerance' must be >= 0, got {tolerance}.")
    else:
        raise _err(
            file,
            f"{where}: missing acceptance threshold: add 'threshold' and 'comparison' (one of "
            f"{list(COMPARISONS)}), or 'target' and 'tolerance'.",
        )
    for key in ("comparison", "tolerance"):
        if key in raw and not (has_thr if key == "comparison" else has_tgt):
            raise _err(file, f"{where}: key {key!r} given without "
                             f"{'threshold' if key == 'comparison' else 'target'}.")
    known = raw.get("known_failure")
    if known is not None and (not isinstance(known, str) or len(known.strip()) < 10):
        raise _err(file, f"{where}: key 'known_failure' must say why the case fails and where it "
                         f"is tracked (e.g. \"issue #15: the forecast is biased low\"), got {known!r}.")
    return Case(
        name=name.strip(), file=file, tier=tier, target_kind=kind, target=target,
        metric=metric, kwargs=dict(raw.get("kwargs", {})),
        metric_kwargs=dict(raw.get("metric_kwargs", {})), threshold=threshold,
        comparison=comparison, target_value=target_value, tolerance=tolerance,
        description=str(raw.get("description", "")),
        suite_root=root, local_modules=tuple(local),
        known_failure=known.strip() if known else None,
    )


def _read_toml(file: Path) -> dict:
    try:
        with open(file, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise _err(file, f"not valid TOML: {err}") from err


def read_manifest(root: str | Path) -> tuple[str, ...]:
    """The local modules declared in ``<root>/suite.toml`` (empty when there is no manifest).

    Raises
    ------
    SuiteConfigError
        Malformed manifest, or a declared module that is not a file (or package) in ``root``.
    """
    root = Path(root)
    file = root / MANIFEST
    if not file.is_file():
        return ()
    doc = _read_toml(file)
    if set(doc) != {"suite"} or not isinstance(doc["suite"], Mapping):
        raise _err(file, f"the suite manifest holds exactly one [suite] table, got top-level keys "
                         f"{sorted(doc)}.")
    table = doc["suite"]
    unknown = sorted(set(table) - set(MANIFEST_KEYS))
    if unknown:
        raise _err(file, f"[suite]: unknown key(s) {unknown}; valid keys: {list(MANIFEST_KEYS)}.")
    mods = table.get("modules", [])
    if not isinstance(mods, list) or not all(isinstance(m, str) for m in mods):
        raise _err(file, f"[suite] modules must be a list of module names, got {mods!r}.")
    for m in mods:
        if not m.isidentifier() or m in ALLOWED_PACKAGES:
            raise _err(file, f"[suite] modules: {m!r} must be the plain name of a module file in "
                             f"{root} (no dots, no paths, not {list(ALLOWED_PACKAGES)}).")
        if not ((root / f"{m}.py").is_file() or (root / m / "__init__.py").is_file()):
            raise _err(file, f"[suite] modules: {m!r} is declared but neither {root / (m + '.py')} "
                             f"nor {root / m / '__init__.py'} exists. Local modules live in the "
                             "suite root itself.")
    return tuple(mods)


def suite_root_for(file: str | Path, dir_names: Sequence[str] = ("validation_suite",)) -> Path:
    """The suite root of a case file: its nearest enclosing directory named in ``dir_names``.

    Falls back to the file's own directory. Only the manifest is looked up there; modules are
    never searched for in parent directories.
    """
    file = Path(file).resolve()
    for d in file.parents:
        if d.name in set(dir_names):
            return d
    return file.parent


def load_case_file(path: str | Path, *, suite_root: str | Path | None = None) -> list[Case]:
    """Parse and validate one TOML case file.

    Parameters
    ----------
    path : str or Path
        The case file.
    suite_root : str or Path, optional
        The suite root whose ``suite.toml`` declares the local modules the cases may call
        (default: the file's directory).

    Raises
    ------
    SuiteConfigError
        Malformed TOML, unknown keys, missing thresholds, bad values — the message names the
        file, the case, the key and the valid choices.
    SuiteRefusedError
        A case names a callable a suite may not run (the message names the case and the rule).
    """
    file = Path(path)
    root = Path(suite_root) if suite_root is not None else file.parent
    local = read_manifest(root)
    doc = _read_toml(file)
    unknown = sorted(set(doc) - set(FILE_KEYS))
    if unknown:
        raise _err(
            file,
            f"unknown top-level key(s) {unknown}. A case file holds only [[case]] tables "
            f"(valid case keys: {', '.join(CASE_KEYS)})"
            + ("; a [suite] table belongs in the suite root's suite.toml." if "suite" in unknown
               else "."),
        )
    raw_cases = doc.get("case")
    if raw_cases is None:
        raise _err(file, "no cases: add at least one [[case]] table.")
    if isinstance(raw_cases, Mapping):
        raw_cases = [raw_cases]
    cases = [_parse_case(file, raw, i, root, local) for i, raw in enumerate(raw_cases)]
    names = [c.name for c in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _err(file, f"duplicate case name(s) {dupes}; names must be unique.")
    for c in cases:  # what a suite may run, checked before anything is imported or run
        _check_allowed(file, f"case {c.name!r}", c.target, root, local)
    return cases


def _suite_root(path: Path, root: str | Path | None) -> Path:
    if root is None:
        return path if path.is_dir() else path.parent
    r = Path(root)
    if not r.is_dir():
        raise SuiteConfigError(f"suite root {str(r)!r} is not a directory.")
    if r.resolve() != path.resolve() and r.resolve() not in path.resolve().parents:
        raise SuiteConfigError(f"suite root {str(r)!r} must contain the suite path {str(path)!r}.")
    return r


def discover_cases(path: str | Path, tier: str = "quick", *,
                   root: str | Path | None = None) -> list[Case]:
    """All cases of ``tier`` under ``path`` (a directory searched recursively, or one file).

    ``tier="quick"`` selects the quick cases; ``tier="full"`` selects every case. ``root`` is
    the suite root whose ``suite.toml`` declares local modules (default: ``path`` itself, or
    the directory of a file).
    """
    if tier not in TIERS:
        raise SuiteConfigError(f"tier must be one of {list(TIERS)}, got {tier!r}.")
    base = Path(path)
    if base.is_file():
        files = [base]
    elif base.is_dir():
        files = sorted(p for p in base.rglob("*.toml") if p.is_file())
    elif not base.exists():
        raise SuiteConfigError(f"validation suite path {str(base)!r} does not exist.")
    else:  # pragma: no cover - e.g. a socket
        files = []
    suite_root = _suite_root(base, root)
    files = [f for f in files if f.resolve() != (suite_root / MANIFEST).resolve()]
    if not files:
        raise SuiteConfigError(f"no *.toml case files under {str(base)!r}.")
    cases: list[Case] = []
    seen: dict[str, Path] = {}
    for f in files:
        for c in load_case_file(f, suite_root=suite_root):
            if c.name in seen:
                raise SuiteConfigError(
                    f"case name {c.name!r} appears in both {seen[c.name]} and {f}; case names "
                    "must be unique across a suite."
                )
            seen[c.name] = f
            if tier == "full" or c.tier == "quick":
                cases.append(c)
    return cases


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
@dataclass
class CaseResult:
    """Outcome of one case: status ``"passed"``, ``"failed"``, ``"error"`` or ``"known failure"``.

    A case marked ``known_failure = "why"`` that fails is a ``"known failure"`` (reported on
    every run, with its reason; it does not fail the suite); one that *passes* is ``"failed"``
    (strict, as pytest's ``xfail(strict=True)``): remove the mark once the cause is fixed.
    """

    case: Case
    status: str
    value: float | None
    message: str
    duration: float
    details: str = ""

    @property
    def passed(self) -> bool:
        """True when the case met its acceptance criterion."""
        return self.status == "passed"

    def to_record(self) -> dict:
        """Plain dict (JSON-able) for a ledger or report."""
        return {
            "name": self.case.name, "file": str(self.case.file), "tier": self.case.tier,
            "metric": self.case.metric, "value": self.value, "criterion": self.case.criterion,
            "status": self.status, "message": self.message, "duration_s": self.duration,
        }


def _package_dir(top: str) -> Path:
    pkg = importlib.import_module(top)
    return Path(pkg.__file__).resolve().parent  # type: ignore[arg-type]


def _load_local(root: Path, mod_name: str):
    """Import ``mod_name`` from the suite root only, under a private package name.

    A synthetic package ``_vvuq_suite_local_<hash of root>`` with ``__path__ = [root]`` holds the
    local modules, so nothing on ``sys.path`` can shadow them and they cannot shadow anything.
    """
    import types

    root = root.resolve()
    key = _LOCAL_PREFIX + hashlib.sha256(str(root).encode()).hexdigest()[:16]
    pkg = sys.modules.get(key)
    if pkg is None:
        pkg = types.ModuleType(key)
        pkg.__path__ = [str(root)]  # type: ignore[attr-defined]
        pkg.__package__ = key
        sys.modules[key] = pkg
    return importlib.import_module(f"{key}.{mod_name}"), key


def _resolve(target: str, case_file: Path, case: Case | None = None) -> Callable[..., Any]:
    mod_name, func_name = target.split(":")
    top = mod_name.split(".")[0]
    root = case.suite_root if case is not None and case.suite_root is not None else case_file.parent
    local = case.local_modules if case is not None else read_manifest(root)
    where = f"case {case.name!r}" if case is not None else "case"
    _check_allowed(case_file, where, target, root, local)
    try:
        if top in ALLOWED_PACKAGES:
            module = importlib.import_module(mod_name)
            origin, home = getattr(module, "__file__", None), _package_dir(top)
            if origin is None or home not in Path(origin).resolve().parents:
                raise SuiteRefusedError(
                    f"{case_file}: {where}: refused {target!r}: module {mod_name!r} was found at "
                    f"{origin}, outside the installed package {home}.")
            owners = (top,)
        else:
            module, key = _load_local(root, mod_name)
            owners = (f"{key}.{top}",)
    except SuiteRefusedError:
        raise
    except ImportError as err:
        raise SuiteConfigError(
            f"{case_file}: cannot import module {mod_name!r} named in {target!r}: {err}."
        ) from err
    fn = getattr(module, func_name, None)
    if fn is None or not callable(fn):
        raise SuiteConfigError(
            f"{case_file}: module {mod_name!r} has no function {func_name!r} (named in "
            f"{target!r})."
        )
    fn_mod = getattr(fn, "__module__", None) or ""
    if not inspect.isfunction(fn) or not any(fn_mod == o or fn_mod.startswith(o + ".")
                                             for o in owners):
        raise SuiteRefusedError(
            f"{case_file}: {where}: refused {target!r}: {func_name!r} is "
            f"{'a function of module ' + repr(fn_mod) if inspect.isfunction(fn) else 'not a Python function'}"
            f", not one defined in {top!r}; {_rule(root)}."
        )
    return fn


def _scalar(x: Any, what: str) -> float:
    try:
        import numpy as np

        arr = np.asarray(getattr(x, "values", x), dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} is not a number: {x!r}") from err
    if arr.size != 1:
        raise TypeError(f"{what} must be a scalar, got an array of shape {arr.shape}.")
    return float(arr.reshape(()))


#: predictives already computed in this process, shared by cases naming the same function and
#: keyword arguments (a twin's predict runs once per suite, not once per metric)
_PREDICTIVE_CACHE: dict[tuple[str, str, str], Any] = {}
_PREDICTIVE_CACHE_SIZE = 8


def _predictive(case: Case, fn: Callable[..., Any]) -> Any:
    import inspect

    try:
        src = inspect.getfile(fn)
    except TypeError:
        src = repr(fn)
    key = (case.target, src, repr(sorted(case.kwargs.items())))
    if key not in _PREDICTIVE_CACHE:
        if len(_PREDICTIVE_CACHE) >= _PREDICTIVE_CACHE_SIZE:
            _PREDICTIVE_CACHE.pop(next(iter(_PREDICTIVE_CACHE)))
        _PREDICTIVE_CACHE[key] = fn(**case.kwargs)
    return _PREDICTIVE_CACHE[key]


def _evaluate(case: Case) -> float:
    fn = _resolve(case.target, case.file, case)
    out = _predictive(case, fn) if case.target_kind == "predictive" else fn(**case.kwargs)
    if case.target_kind == "predictive":
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(
                f"{case.target} must return a tuple (predictive, observed), got "
                f"{type(out).__name__}."
            )
        return _scalar(PREDICTIVE_METRICS[case.metric](out[0], out[1],  # type: ignore[index]
                                                       **case.metric_kwargs),
                       f"metric {case.metric!r}")
    if isinstance(out, Mapping):
        if case.metric is None or case.metric not in out:
            raise KeyError(
                f"{case.target} returned a mapping with keys {sorted(map(str, out))}; set "
                "'metric' in the case to one of them"
                + (f" (got {case.metric!r})." if case.metric is not None else ".")
            )
        return _scalar(out[case.metric], f"{case.target}[{case.metric!r}]")
    return _scalar(out, f"the return value of {case.target}")


def run_case(case: Case) -> CaseResult:
    """Run one case; exceptions become status ``"error"`` with the traceback in ``details``."""
    t0 = time.perf_counter()
    try:
        value = _evaluate(case)
    except Exception as err:  # noqa: BLE001 - reported, never swallowed silently
        return CaseResult(case, "error", None, f"{type(err).__name__}: {err}",
                          time.perf_counter() - t0, traceback.format_exc())
    ok = case.accepts(value)
    label = case.metric or "value"
    msg = (f"{label} = {value:.6g} satisfies {case.criterion}" if ok else
           f"{label} = {value:.6g} does not satisfy {case.criterion}")
    status = "passed" if ok else "failed"
    if case.known_failure and ok:      # strict: a known failure that passes fails the suite
        status, msg = "failed", (f"{msg}, but the case is marked known_failure ({case.known_failure}): "
                                 "it passes now, so remove the mark from the case file")
    elif case.known_failure:
        status, msg = "known failure", f"{msg} (known failure: {case.known_failure})"
    return CaseResult(case, status, value, msg, time.perf_counter() - t0)


@dataclass
class SuiteResult:
    """Results of a suite run."""

    path: str
    tier: str
    results: list[CaseResult]
    n_not_selected: int = 0

    @property
    def n_passed(self) -> int:
        return sum(r.status == "passed" for r in self.results)

    @property
    def n_failed(self) -> int:
        return sum(r.status == "failed" for r in self.results)

    @property
    def n_errors(self) -> int:
        return sum(r.status == "error" for r in self.results)

    @property
    def n_known_failures(self) -> int:
        return sum(r.status == "known failure" for r in self.results)

    @property
    def ok(self) -> bool:
        """True when every selected case passed or is a known failure (and at least one ran)."""
        return bool(self.results) and self.n_passed + self.n_known_failures == len(self.results)

    def to_records(self) -> list[dict]:
        """One plain dict per case (for the VVUQ ledger or a report)."""
        return [r.to_record() for r in self.results]

    def summary_table(self) -> str:
        """Fixed-width text table: status, tier, case, metric, value, criterion, seconds."""
        rows = [("STATUS", "TIER", "CASE", "METRIC", "VALUE", "CRITERION", "TIME[s]")]
        for r in self.results:
            rows.append((r.status.upper(), r.case.tier, r.case.name, r.case.metric or "-",
                         "-" if r.value is None else f"{r.value:.6g}", r.case.criterion,
                         f"{r.duration:.2f}"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for r in self.results:
            if r.status != "passed":
                lines.append(f"{r.status.upper()} {r.case.name} ({r.case.file}): {r.message}")
        extra = (f"; {self.n_not_selected} full-tier case(s) not selected"
                 if self.n_not_selected else "")
        known = f", {self.n_known_failures} known failures" if self.n_known_failures else ""
        lines.append(f"{self.n_passed} passed, {self.n_failed} failed, {self.n_errors} errors{known} "
                     f"(tier {self.tier}{extra})")
        return "\n".join(lines)

    def to_junit_xml(self, path: str | Path | None = None) -> str:
        """JUnit XML text (written to ``path`` when given), one ``testcase`` per case."""
        total = sum(r.duration for r in self.results)
        suites = ET.Element("testsuites", name="vvuq-twin validate",
                            tests=str(len(self.results)), failures=str(self.n_failed),
                            errors=str(self.n_errors), time=f"{total:.3f}")
        suite = ET.SubElement(
            suites, "testsuite", name=f"vvuq-twin.validation.{self.tier}",
            tests=str(len(self.results)), failures=str(self.n_failed),
            errors=str(self.n_errors), skipped=str(self.n_known_failures), time=f"{total:.3f}",
            timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        for r in self.results:
            tc = ET.SubElement(suite, "testcase", classname=f"validation.{r.case.file.stem}",
                               name=r.case.name, file=str(r.case.file),
                               time=f"{r.duration:.3f}")
            props = ET.SubElement(tc, "properties")
            for k, v in (("tier", r.case.tier), ("metric", r.case.metric or ""),
                         ("value", "" if r.value is None else repr(r.value)),
                         ("criterion", r.case.criterion)):
                ET.SubElement(props, "property", name=k, value=v)
            if r.status == "failed":
                el = ET.SubElement(tc, "failure", message=r.message, type="ValidationFailure")
                el.text = r.message
            elif r.status == "error":
                el = ET.SubElement(tc, "error", message=r.message, type="ValidationError")
                el.text = r.details
            elif r.status == "known failure":
                el = ET.SubElement(tc, "skipped", message=r.message, type="KnownFailure")
                el.text = r.message
        ET.indent(suites)
        text = ET.tostring(suites, encoding="unicode", xml_declaration=True)
        if path is not None:
            from ._io import atomic_write_text

            atomic_write_text(path, text)
        return text


def run_suite(
    path: str | Path = "validation_suite",
    tier: str = "quick",
    junit: str | Path | None = None,
    *,
    select: str | None = None,
    stream: TextIO | None = None,
    root: str | Path | None = None,
    progressbar: bool | None = None,
) -> SuiteResult:
    """Run the validation suite under ``path``.

    Parameters
    ----------
    path : str or Path
        Suite directory (searched recursively for ``*.toml``) or one case file.
    tier : {"quick", "full"}
        ``"quick"`` runs quick cases; ``"full"`` runs all cases.
    junit : str or Path, optional
        Write JUnit XML here.
    select : str, optional
        Run only cases whose name contains this substring.
    stream : text stream, optional
        Where the summary table is printed (default ``sys.stdout``; ``None`` prints there).
    root : str or Path, optional
        Suite root whose ``suite.toml`` declares the local modules (default: ``path``, or the
        directory of a file); must contain ``path``.
    progressbar : bool or None
        A line on stderr per case as it starts and ends, plus periodic lines during long cases
        (on by default, see :mod:`vvuq_twin.progress`); ``False`` silences it.

    Returns
    -------
    SuiteResult

    Raises
    ------
    SuiteConfigError
        A case file is malformed, or a case names a callable a suite may not run
        (:class:`SuiteRefusedError`); nothing runs in that case.
    """
    cases = discover_cases(path, tier, root=root)
    n_all = len(discover_cases(path, "full", root=root))
    if select:
        cases = [c for c in cases if select in c.name]
    from .progress import Progress, progress_enabled

    on = progress_enabled(progressbar)
    results = []
    for i, c in enumerate(cases):
        with Progress(f"validate case {i + 1}/{len(cases)} {c.name!r}", on):
            results.append(run_case(c))
    res = SuiteResult(str(path), tier, results, n_not_selected=n_all - len(cases)
                      if not select else 0)
    print(res.summary_table(), file=stream if stream is not None else sys.stdout)
    if junit is not None:
        res.to_junit_xml(junit)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    """Command line ``vvuq-twin validate [PATH] [--tier quick|full] [--junit FILE] [-k STR]``.

    Returns
    -------
    int
        0 when every selected case passed or is a known failure, 1 when any failed or errored
        (a known failure that passes counts as failed; or none ran), 2 for a
        malformed suite.
    """
    parser = argparse.ArgumentParser(
        prog="vvuq-twin validate",
        description="Run a validation suite of declarative TOML cases.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "What a suite may run: a case may call only public functions of vvuq_twin (not its\n"
            "command-line or suite modules) and of case_studies, and of the local modules that\n"
            "the suite root declares in ROOT/suite.toml:\n"
            "    [suite]\n"
            "    modules = [\"cases_validation\"]     # ROOT/cases_validation.py\n"
            "Local modules are loaded from the suite root only, never from parent directories or\n"
            "sys.path. os:system, subprocess:run, builtins:exec, other packages and private\n"
            "functions are refused before anything runs (exit status 2). A suite with local\n"
            "modules is code: review it like code before running it (e.g. in CI on a pull request)."
        ),
    )
    parser.add_argument("path", nargs="?", default="validation_suite",
                        help="suite directory or case file (default: validation_suite)")
    parser.add_argument("--tier", choices=TIERS, default="quick",
                        help="quick: quick cases; full: all cases (default: quick)")
    parser.add_argument("--junit", default=None, metavar="FILE", help="write JUnit XML here")
    parser.add_argument("-k", "--select", default=None, metavar="STR",
                        help="run only cases whose name contains STR")
    parser.add_argument("--root", default=None, metavar="DIR",
                        help="suite root holding suite.toml (default: PATH, or its directory for a "
                             "file); must contain PATH")
    parser.add_argument("--list", action="store_true", help="list the selected cases and exit")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress lines on stderr (default: one per case, and periodic)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        if args.list:
            for c in discover_cases(args.path, args.tier, root=args.root):
                if not args.select or args.select in c.name:
                    print(f"{c.tier:5}  {c.name}  ({c.file})  {c.criterion}")
            return 0
        res = run_suite(args.path, args.tier, args.junit, select=args.select, root=args.root,
                        progressbar=False if args.no_progress else None)
    except SuiteConfigError as err:
        print(f"vvuq-twin validate: error: {err}", file=sys.stderr)
        return 2
    if not res.results:
        print("vvuq-twin validate: no cases selected.", file=sys.stderr)
        return 1
    return 0 if res.ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
