"""pytest plugin: ``pytest validation_suite/`` runs the declarative validation cases.

Registered as a ``pytest11`` entry point. Importing it is cheap (only pytest, which is already
loaded); it does nothing unless pytest meets ``*.toml`` files inside a directory named
``validation_suite`` (configurable with the ini option ``vvuq_suite_dirs``). Each case becomes
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
        help="directory names whose *.toml files are vvuq-twin validation cases",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect ``*.toml`` case files that lie inside a validation-suite directory."""
    if file_path.suffix != ".toml":
        return None
    dirs = set(parent.config.getini("vvuq_suite_dirs"))
    if not dirs.intersection(file_path.parent.parts):
        return None
    if file_path.name == "suite.toml" and file_path.parent.name in dirs:
        return None  # the suite manifest (declared local modules), not a case file
    return CaseFile.from_parent(parent, path=file_path)


class CaseFailure(Exception):
    """A validation case did not meet its acceptance criterion."""


class CaseFile(pytest.File):
    """A TOML case file: one :class:`CaseItem` per case."""

    def collect(self) -> Any:
        from .suite import load_case_file, suite_root_for

        tier = self.config.getoption("--vvuq-tier")
        root = suite_root_for(self.path, self.config.getini("vvuq_suite_dirs"))
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
