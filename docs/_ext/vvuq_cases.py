"""Case-study pages show the key figures of the case's own report.

The case studies run for minutes (``vvuq-twin run <case> --quick``), too long to repeat inside
every documentation build. CI runs them once, in the validation suite, with
``VVUQ_TWIN_CASE_OUT`` pointing at a folder; this extension reads the reports written there
(``<VVUQ_TWIN_CASE_OUT>/<case>/**/report.html``), extracts the figures the report embeds
(base64 PNG with their captions; their SHA-256 must match the figure hashes in the report's
``summary.json``), and writes for each case an include file
``docs/case-studies/_generated/<case>.md`` (paths relative to ``docs/case-studies/``, where the
case page includes it) with the figures, the report's summary table and a
download link to the full HTML report. Without the outputs the include file says so and how to
produce them; the build stays warning-free either way.

``python docs/_ext/vvuq_cases.py OUT`` writes the include files by hand (what the build does).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

CASES = ("tumor", "airframe", "climate")
ENV = "VVUQ_TWIN_CASE_OUT"
_FIG = re.compile(r'<figure id="figure-(\d+)"><img src="data:image/png;base64,([A-Za-z0-9+/=]+)"[^>]*>'
                  r"<figcaption>(.*?)</figcaption></figure>", re.S)


class CaseReportError(ValueError):
    """A case report whose embedded figures do not match its ``summary.json``."""


def find_report(out: Path, case: str) -> Path | None:
    """The newest ``report.html`` under ``out/case`` (None when the case was not run)."""
    root = Path(out) / case
    if not root.is_dir():
        return None
    found = sorted(root.rglob("report.html"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def extract_figures(report_html: Path) -> list[dict[str, Any]]:
    """Figures of a report: ``{"number", "caption", "png", "sha256"}`` in document order.

    Raises
    ------
    CaseReportError
        When ``summary.json`` beside the report lists figures whose PNG hashes differ from the
        embedded ones (a report edited or mixed up with another run's summary).
    """
    text = Path(report_html).read_text(encoding="utf-8")
    figs = []
    for num, b64, cap in _FIG.findall(text):
        png = base64.b64decode(b64)
        caption = html.unescape(re.sub(r"<[^>]+>", "", cap)).strip()
        caption = re.sub(r"^Figure \d+\.\s*", "", caption)
        figs.append({"number": int(num), "caption": caption, "png": png,
                     "sha256": hashlib.sha256(png).hexdigest()})
    summary = Path(report_html).with_name("summary.json")
    if summary.exists():
        doc = json.loads(summary.read_text(encoding="utf-8"))
        listed = [it["png_sha256"] for sec in doc.get("sections", []) for it in sec.get("items", [])
                  if it.get("kind") == "figure"]
        if listed and listed != [f["sha256"] for f in figs]:
            raise CaseReportError(
                f"{report_html}: its {len(figs)} embedded figures do not match the {len(listed)} "
                f"figure hashes of {summary.name}; re-run the case study to write both together")
    return figs


def _summary_rows(report_html: Path) -> list[tuple[str, str]]:
    summary = Path(report_html).with_name("summary.json")
    if not summary.exists():
        return []
    doc = json.loads(summary.read_text(encoding="utf-8"))
    rows = []
    for k, v in (doc.get("summary") or {}).items():
        if isinstance(v, (dict, list)):
            v = json.dumps(v, default=str)
            if len(v) > 120:
                continue
        rows.append((str(k), str(v)))
    return rows


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def write_case_page(case: str, out: Path | None, dest: Path) -> Path:
    """Write ``dest/<case>.md`` (figures, summary table, report link) and its files."""
    dest = Path(dest)
    folder = dest / case
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    report = find_report(out, case) if out is not None else None
    lines = ["## Figures from the report", ""]
    if report is None:
        where = f"`{out}/{case}`" if out is not None else f"`${ENV}` (unset)"
        lines += [
            "```{note}",
            f"This build of the documentation had no report of the {case} case ({where}). "
            f"CI builds the pages after running the case studies with `{ENV}` set; locally, "
            f"`{ENV}=out vvuq-twin validate validation_suite --tier quick` (or "
            f"`vvuq-twin run {case} --quick --seed 1 --out out`) and then the docs build "
            "fill this section.",
            "```", ""]
    else:
        shutil.copy2(report, folder / "report.html")
        figs = extract_figures(report)
        rows = _summary_rows(report)
        lines += [f"From the report of this build's run ({len(figs)} figures; "
                  f"{{download}}`the full HTML report <_generated/{case}/report.html>`).", ""]
        for f in figs:
            name = f"figure-{f['number']:02d}.png"
            (folder / name).write_bytes(f["png"])
            lines += [f":::{{figure}} _generated/{case}/{name}", f":alt: {_cell(f['caption'])[:200]}", "",
                      f"Figure {f['number']}. {f['caption']}", ":::", ""]
        if rows:
            lines += ["## Summary of the run", "", "| field | value |", "|---|---|"]
            lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows]
            lines += [""]
    page = dest / f"{case}.md"
    page.write_text("\n".join(lines), encoding="utf-8")
    return page


def write_all(out: Path | None, dest: Path) -> list[Path]:
    """One include file per case study."""
    return [write_case_page(c, out, dest) for c in CASES]


def _builder_inited(app: Any) -> None:
    out = os.environ.get(ENV)
    dest = Path(app.srcdir) / "case-studies" / "_generated"
    write_all(Path(out) if out else None, dest)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":  # pragma: no cover - manual use
    for p in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else None,
                       Path(__file__).resolve().parents[1] / "case-studies" / "_generated"):
        print(p)
