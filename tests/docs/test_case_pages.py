"""Case-study pages show the figures of the case's own report (``docs/_ext/vvuq_cases.py``).

The extraction is checked on a report written here (figures by PNG hash, a tampered summary
refused, a missing run said). On a built site whose build read case outputs
(``VVUQ_TWIN_CASE_OUT``, as ``.ci/run`` sets it), each case page must carry the report's figures
and render them in headless Chromium without a broken image.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from vvuq_twin.report import Report  # noqa: E402
from vvuq_twin.report.report import figure_to_png  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cases = _load("vvuq_cases", REPO / "docs" / "_ext" / "vvuq_cases.py")


def _figure(k: float):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [0, k, 2 * k])
    ax.set_xlabel("day")
    ax.set_ylabel("volume")
    return fig


def _write_report(out: Path) -> list[bytes]:
    rep = Report("tumor test report", seed=3)
    figs = [_figure(1.0), _figure(2.0)]
    pngs = [figure_to_png(f, dpi=rep.figure_dpi) for f in figs]
    rep.add_summary(diagnostics="PASS", validation="coverage 0.9")
    rep.add_figure("Calibration", figs[0], "Posterior <predictive> band & data")
    rep.add_text("Calibration", "what a reader should conclude")
    rep.add_figure("Validation", figs[1], "PIT histogram")
    rep.write(out)
    return pngs


def test_case_page_carries_the_reports_figures(tmp_path):
    pngs = _write_report(tmp_path / "cases" / "tumor" / "nested")
    page = cases.write_case_page("tumor", tmp_path / "cases", tmp_path / "gen")
    text = page.read_text()
    written = sorted((tmp_path / "gen" / "tumor").glob("figure-*.png"))
    assert [p.name for p in written] == ["figure-01.png", "figure-02.png"]
    # the bytes on the page are the bytes the report embeds (same hashes as its summary.json)
    summary = json.loads((tmp_path / "cases" / "tumor" / "nested" / "summary.json").read_text())
    hashes = [it["png_sha256"] for s in summary["sections"] for it in s["items"] if it["kind"] == "figure"]
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in written] == hashes
    assert [p.read_bytes() for p in written] == pngs
    assert "Posterior <predictive> band & data" in text and "PIT histogram" in text
    assert "{download}`the full HTML report <_generated/tumor/report.html>`" in text
    assert (tmp_path / "gen" / "tumor" / "report.html").exists()
    assert "| diagnostics | PASS |" in text


def test_a_mismatched_summary_is_refused(tmp_path):
    _write_report(tmp_path / "cases" / "tumor")
    sj = tmp_path / "cases" / "tumor" / "summary.json"
    doc = json.loads(sj.read_text())
    doc["sections"][0]["items"][0]["png_sha256"] = "0" * 64
    sj.write_text(json.dumps(doc))
    with pytest.raises(cases.CaseReportError, match="do not match"):
        cases.write_case_page("tumor", tmp_path / "cases", tmp_path / "gen")


def test_a_case_without_a_run_says_how_to_get_one(tmp_path):
    page = cases.write_case_page("climate", tmp_path / "nothing", tmp_path / "gen")
    text = page.read_text()
    assert "had no report of the climate case" in text and "VVUQ_TWIN_CASE_OUT" in text
    assert not list((tmp_path / "gen" / "climate").glob("*.png"))


# ---- the built site (CI: after the case studies ran with VVUQ_TWIN_CASE_OUT) ----------------
site_mod = _load("_docs_site", REPO / "tests" / "docs" / "test_docs_site.py")
SITE = site_mod.SITE


@pytest.mark.skipif(not (SITE / "case-studies" / "tumor.html").exists(), reason="docs site not built")
@pytest.mark.skipif(not os.environ.get(cases.ENV), reason=f"{cases.ENV} unset: the case studies were not run")
@pytest.mark.skipif(site_mod.CHROMIUM is None, reason="headless Chromium is not installed")
@pytest.mark.parametrize("case", cases.CASES)
def test_built_case_page_renders_its_figures(case, tmp_path):
    report = cases.find_report(Path(os.environ[cases.ENV]), case)
    assert report is not None, f"no report of the {case} case under ${cases.ENV}"
    n_figs = len(cases.extract_figures(report))
    assert n_figs >= 1, f"the {case} report has no figure"
    site = tmp_path / "html"
    import shutil

    shutil.copytree(SITE, site, ignore=shutil.ignore_patterns(".doctrees", "_sources"))
    page = f"case-studies/{case}.html"
    imgs = site_mod._local_images(site, page)
    assert len(imgs) >= n_figs and all(p.exists() for p in imgs)
    status, console = site_mod._render(site, page, tmp_path / "chrome")
    assert status["broken"] == "", status
    assert int(status["images"]) >= n_figs
    assert status["errors"] == "", status["errors"]
