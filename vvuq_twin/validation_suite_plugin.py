"""pytest plugin: ``pytest validation_suite/`` runs the declarative validation cases.

Registered as a ``pytest11`` entry point. Importing it is cheap (only pytest, which is already
loaded). It collects a ``*.toml`` file as a case file when

* it lies inside a directory named on the command line (``pytest my_suite/``) and holds
  ``[[case]]`` tables - other TOML files there are left alone; or
* it lies inside a directory listed in the ini option ``vvuq_suite_dirs`` (default
  ``validation_suite``): an entry without ``/`` matches a directory *name* at any depth, an
  entry with ``/`` a path relative to the rootdir, e.g. in ``pyproject.toml``::

      [tool.pytest.ini_options]
      vvuq_suite_dirs = ["validation_suite", "checks/twin_cases"]

Each case becomes
one pytest item; ``--vvuq-tier quick`` (default) runs the quick cases and skips the others,
``--vvuq-tier full`` runs all. Cases are run by :func:`vvuq_twin.suite.run_case`, so the
``vvuq-twin validate`` command and pytest agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

__all__ = ["pytest_addoption", "pytest_collect_file", "CaseFile", "CaseItem"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--vvuq-tier`` and the ini option ``vvuq_suite_dirs``."""
    group = parser.getgroup("vvuq-twin", "vvuq-twin validation suite")
    group.addoption(
        "--vvuq-tier", action="store", default="quick", choices=("quick", "full"),
        help="validation-suite tier to run: quick (default) or full (all cases)",
    )
    parser.addini(
        "vvuq_suite_dirs", type="linelist", default=["validation_suite"],
        help="directories whose *.toml files are vvuq-twin validation cases: a name (any depth) "
             "or a path relative to the rootdir (contains '/')",
    )


def _is_case_file(path: Path) -> bool:
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return isinstance(tomllib.loads(path.read_text(encoding="utf-8")).get("case"), list)
    except (OSError, ValueError):
        return True  # malformed: collect it, so the error is reported instead of hidden


def _in_configured_dir(config: pytest.Config, file_path: Path) -> bool:
    root = Path(str(config.rootpath)).resolve()
    resolved = file_path.resolve()
    for entry in config.getini("vvuq_suite_dirs"):
        entry = str(entry).strip().rstrip("/")
        if not entry:
            continue
        if "/" in entry or entry in (".", ".."):
            base = (root / entry).resolve()
            if base == resolved.parent or base in resolved.parents:
                return True
        elif entry in file_path.parent.parts:
            return True
    return False


def _in_named_dir(config: pytest.Config, file_path: Path) -> bool:
    resolved = file_path.resolve()
    for arg in config.args:
        p = Path(str(arg).split("::")[0])
        if not p.is_absolute():
            p = Path(str(config.invocation_params.dir)) / p
        p = p.resolve()
        if p.is_dir() and (p == resolved.parent or p in resolved.parents):
            return True
    return False


def _manifest_root(file_path: Path, boundary: Path) -> Path | None:
    """The nearest directory from the case file up to ``boundary`` (pytest's rootdir) holding a
    ``suite.toml`` manifest: the suite root whose declared local modules the cases may call
    (modules themselves load from that root only, never from further up)."""
    file_path, boundary = file_path.resolve(), boundary.resolve()
    for d in file_path.parents:
        if (d / "suite.toml").is_file():
            return d
        if d == boundary:
            break
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect ``*.toml`` case files in a configured suite directory or one named on the
    command line (there only files that hold ``[[case]]`` tables)."""
    if file_path.suffix != ".toml":
        return None
    if file_path.name == "suite.toml":
        return None  # the suite manifest (declared local modules), not a case file
    config = parent.config
    if _in_configured_dir(config, file_path):
        return CaseFile.from_parent(parent, path=file_path)
    if _in_named_dir(config, file_path) and _is_case_file(file_path):
        return CaseFile.from_parent(parent, path=file_path)
    return None


class CaseFailure(Exception):
    """A validation case did not meet its acceptance criterion."""


class CaseFile(pytest.File):
    """A TOML case file: one :class:`CaseItem` per case."""

    def collect(self) -> Any:
        from .suite import load_case_file, suite_root_for

        tier = self.config.getoption("--vvuq-tier")
        root = _manifest_root(self.path, Path(str(self.config.rootpath))) or suite_root_for(
            self.path, self.config.getini("vvuq_suite_dirs"))
        for case in load_case_file(self.path, suite_root=root):
            item = CaseItem.from_parent(self, name=case.name, case=case)
            if tier == "quick" and case.tier != "quick":
                item.add_marker(pytest.mark.skip(
                    reason=f"tier {case.tier!r} case (run with --vvuq-tier full)"))
            yield item


class CaseItem(pytest.Item):
    """One validation case run as a pytest test."""

    def __init__(self, *, case: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        from .suite import run_case

        result = run_case(self.case)
        self.user_properties.append(("metric", self.case.metric or ""))
        self.user_properties.append(("value", result.value))
        self.user_properties.append(("criterion", self.case.criterion))
        if result.status == "known failure":
            pytest.xfail(result.message)   # a passing known failure comes back as "failed"
        if result.status != "passed":
            raise CaseFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailure):
            r = excinfo.value.args[0]
            text = f"validation case {r.case.name!r} {r.status}: {r.message}"
            return text + (f"\n{r.details}" if r.details else "")
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        line = 0
        for i, text in enumerate(self.path.read_text(encoding="utf-8").splitlines()):
            if text.strip().replace(" ", "") == f'name="{self.case.name}"':
                line = i
                break
        return self.path, line, f"vvuq case {self.case.name} [{self.case.tier}]"
