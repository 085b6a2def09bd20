"""HTML/JSON/NetCDF report: structure, summary values, determinism, errors."""

from __future__ import annotations

import base64
import json
import re
import struct
from datetime import datetime, timezone
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from vvuq_twin.report import (  # noqa: E402
    GENERATED_ID,
    STATUS_ID,
    SUMMARY_FIELDS,
    SUMMARY_ID,
    Metric,
    Report,
    ReportError,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
T1 = datetime(2027, 6, 7, 8, 9, 10, tzinfo=timezone.utc)
SHA = "7bba01a08c1c134f7823699d8a0b329062553942fac8b93368d28aac23b04048"


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Collect:
    p = _Collect()
    p.feed(html)
    return p


def _make(seed: int = 7, created=T0, n_fig: int = 2) -> Report:
    rep = Report("Tumor twin <case>", seed=seed, subtitle="vvuq-twin run tumor --quick", created=created)
    rep.add_summary(
        assumptions=["log-normal measurement error", "Gompertz growth"],
        data_provenance=[{"file": "tumor_lung_llc_volumes.tsv", "sha256": SHA, "citation": "Benzekry et al. 2014"}],
        verification=[Metric("RK4 observed order", 3.98, (3.7, 4.3), "within"),
                      Metric("SBC rank uniformity p-value", 0.41, 0.01, ">=")],
        validation=[Metric("90% coverage (hold-out)", 0.875, (0.8, 0.97), "within"),
                    Metric("CRPS (hold-out)", 0.3129, 0.25, "<=", unit="log mm^3")],
        diagnostics=[Metric("max R-hat", 1.004, 1.01, "<="), Metric("divergences", 0, 0, "<=")],
        sensitivity={"beta": 0.12, "alpha": 0.71, "sigma": 0.05},
        risk={"superquantile 95% of volume at day 21 (mm^3)": 2234.5, "P(V > 2000)": 0.0312},
        decision="Image again on day 14",
        next_measurement="Mouse 7 on day 14 (largest expected reduction of time-to-threshold variance)",
    )
    for k in range(n_fig):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot(np.arange(5), np.arange(5) ** (k + 1))
        rep.add_figure("Calibration", fig, f"Posterior predictive band {k}")
    rep.add_table("Calibration", pd.DataFrame({"parameter": ["alpha", "beta"], "mean": [0.912345678, 0.0801]}),
                  "Posterior means")
    rep.add_text("Discussion", "First paragraph.\n\nSecond paragraph with <b>markup</b>.")
    rep.add_dataset("posterior", xr.Dataset({"alpha": (("chain", "draw"), np.arange(6.0).reshape(2, 3))}))
    return rep


def test_html_structure_and_summary_values(tmp_path):
    rep = _make()
    paths = rep.write(tmp_path)
    html = paths["html"].read_text()
    assert html.startswith("<!DOCTYPE html>")
    p = _parse(html)
    text = " ".join(p.text)
    ids = [a.get("id") for _, a in p.tags if a.get("id")]
    assert SUMMARY_ID in ids and STATUS_ID in ids and GENERATED_ID in ids
    # summary rows in the standard order, before the first section
    rows = [i[len("summary-"):] for i in ids if i.startswith("summary-")]
    assert rows == list(SUMMARY_FIELDS)
    assert html.index(SUMMARY_ID) < html.index('id="sec-calibration"')
    # values appear, formatted with 4 significant digits
    for s in ["Image again on day 14", "Mouse 7 on day 14", "log-normal measurement error", SHA,
              "0.875", "0.3129", "1.004", "2234", "0.0312", "3.98", "within [3.7, 4.3]", "&lt;= 0.25"]:
        assert s in html, s
    # pass/fail against thresholds: CRPS 0.3129 > 0.25 fails, the rest pass
    val_row = re.search(r'<tr id="summary-validation">(.*?)</tr></tbody></table></td></tr>', html, re.S).group(1)
    assert val_row.count('class="pass">PASS') == 1 and val_row.count('class="fail">FAIL') == 2  # row badge + CRPS
    assert 'id="summary-diagnostics"><th scope="row">Sampler diagnostics <span class="pass">PASS' in html
    # sensitivity ranked by magnitude
    assert html.index("alpha: 0.71") < html.index("beta: 0.12") < html.index("sigma: 0.05")
    # seed, software, commit
    assert "Seed 7." in text and "git_commit" in html and "pymc" in html
    # escaping: the title's markup is text, the paragraph's <b> is not a tag
    assert "<case>" not in html and "Tumor twin &lt;case&gt;" in html
    assert not any(t == "b" for t, _ in p.tags)
    # figures: embedded PNG, none external
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 2
    for a in imgs:
        assert a["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(a["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        w, h = struct.unpack(">II", png[16:24])
        assert w > 50 and h > 50
    for t, a in p.tags:
        for attr in ("src", "href"):
            if attr in a:
                assert a[attr].startswith(("data:", "#")), (t, a)
    assert "http://" not in html and "https://" not in html
    assert "0.9123" in html and "0.912345678" not in html  # table float format


def test_json_and_netcdf_outputs(tmp_path):
    rep = _make()
    paths = rep.write(tmp_path)
    js = json.loads(paths["json"].read_text())
    assert list(js["summary"]) == list(SUMMARY_FIELDS)
    val = js["summary"]["validation"]
    assert [m["passed"] for m in val] == [True, False]
    assert val[1]["value"] == 0.3129 and val[1]["threshold"] == 0.25
    assert js["summary"]["software"]["seed"] == 7
    assert js["summary"]["data_provenance"][0]["sha256"] == SHA
    assert js["metadata"]["generated_utc"] == "2026-01-02T03:04:05Z"
    figs = [i for s in js["sections"] for i in s["items"] if i["kind"] == "figure"]
    assert len(figs) == 2 and all(len(f["png_sha256"]) == 64 for f in figs)
    table = [i for s in js["sections"] for i in s["items"] if i["kind"] == "table"][0]
    assert table["records"][0] == {"parameter": "alpha", "mean": 0.912345678}
    back = xr.load_dataset(paths["posterior"])
    np.testing.assert_array_equal(back["alpha"].values, np.arange(6.0).reshape(2, 3))


def test_same_inputs_same_content_only_time_line_differs(tmp_path):
    a = _make(created=T0).write(tmp_path / "a")
    b = _make(created=T1).write(tmp_path / "b")
    ha, hb = a["html"].read_text(), b["html"].read_text()
    assert ha != hb  # the time line differs ...
    strip = lambda s: re.sub(rf'<p class="meta" id="{GENERATED_ID}">[^<]*</p>', "", s)  # noqa: E731
    assert strip(ha) == strip(hb)  # ... and nothing else
    ja, jb = json.loads(a["json"].read_text()), json.loads(b["json"].read_text())
    ja.pop("metadata"), jb.pop("metadata")
    assert ja == jb
    # a different seed is a different report
    c = _make(seed=8, created=T0).write(tmp_path / "c")
    assert strip(c["html"].read_text()) != strip(ha)


def test_missing_fields_are_marked_and_tables_accept_xarray(tmp_path):
    rep = Report("Minimal", seed=None)
    rep.add_table("Results", xr.DataArray(np.array([1.5, 2.5]), dims="x", coords={"x": [0, 1]}, name="y"), "xr")
    rep.add_table("Results", {"mean": 1.0, "sd": 0.5})
    rep.add_table("Results", [Metric("ess", 350.0, 400.0, ">=")])
    html = rep.to_html("t")
    # nine empty fields, plus the seed (None) inside the automatic software row
    assert html.count('class="missing">not provided') == (len(SUMMARY_FIELDS) - 1) + 1
    assert "<td>2.5</td>" in html and "<td>sd</td>" in html and "<td>False</td>" not in html


def test_metric_logic():
    assert Metric("a", 1.0, 1.0, "<=").passed is True
    assert Metric("a", 1.0, 1.0, "<").passed is False
    assert Metric("a", 2.0, 1.0, ">").passed is True
    assert Metric("a", 0.5, (0.6, 0.9), "within").passed is False
    assert Metric("a", float("nan"), 1.0, "<=").passed is False
    assert Metric("a", 3.0).passed is None
    assert Metric("a", float("inf"), 1.0).to_dict()["value"] == "inf"


def test_bad_input_errors():
    rep = Report("r", seed=1)
    with pytest.raises(ReportError, match=r"Unknown summary field\(s\) \['decison'\]. Known fields: \['assumptions'"):
        rep.add_summary(decison="x")
    fig, _ = plt.subplots()
    with pytest.raises(ReportError, match="needs a caption"):
        rep.add_figure("s", fig, "")
    plt.close(fig)
    with pytest.raises(ReportError, match="Expected a matplotlib Figure"):
        rep.add_figure("s", object(), "c")
    with pytest.raises(ReportError, match="plain file stem"):
        rep.add_dataset("../evil", xr.Dataset())
    with pytest.raises(ReportError, match="expected an xarray object"):
        rep.add_dataset("d", [1, 2])
    with pytest.raises(ReportError, match="A table must be"):
        rep.add_table("s", 3.0)
    with pytest.raises(ReportError, match="threshold=\\(low, high\\)"):
        Metric("m", 1.0, 2.0, "within")
    with pytest.raises(ReportError, match="comparison must be one of"):
        Metric("m", 1.0, 2.0, "==")  # type: ignore[arg-type]
    with pytest.raises(ReportError, match="seed must be an int"):
        Report("r", seed="1")  # type: ignore[arg-type]
    with pytest.raises(ReportError, match="non-empty"):
        Report(" ", seed=1)
