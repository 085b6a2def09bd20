"""The airframe case study, quick mode, on the real data: numbers from the run (the climate and
tumor cases have their own modules, test_climate_run.py and test_tumor_run.py).

Each case runs once per module (about two minutes each on 2 cores) and the tests check what
the run found against published values, binomial bands and independent computations:

- airframe (Virkler et al. 1979 data): hold-out coverage in its binomial band, the population
  Paris exponent in the 2024-T3 literature range 2.9-4 (as stated in the case-study brief),
  the quadrature's observed order, the inspection interval meeting P <= 1e-4 by two
  independent rare-event estimators that agree;
- climate (HadCRUT5 + RCMIP): ECS and TCR inside the IPCC AR6 *very likely* ranges
  (2-5 K, 1.2-2.4 K), SSP2-4.5 warming in 2100 inside the AR6 very likely range for
  2081-2100 (2.1-3.5 °C) and scenario ordering, RK4 order and agreement with the exact
  solution, and the decision at the boundary of the chance constraint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from case_studies._data import DATA_ENV_VAR, DataDirectoryError

REPO = Path(__file__).resolve().parents[2]


def _shared_data_dir() -> Path | None:
    env = os.environ.get(DATA_ENV_VAR)
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (cand / "SHA256SUMS").is_file():
            return cand
    return None


@pytest.fixture(scope="module")
def data_dir() -> Path:
    d = _shared_data_dir()
    if d is None:
        pytest.skip(f"real case-study data not found: set {DATA_ENV_VAR} or provide ../shared/data")
    return d


@pytest.fixture(scope="module")
def airframe(data_dir, tmp_path_factory):
    from case_studies.airframe.run import run

    return run(data_dir, tmp_path_factory.mktemp("airframe"), seed=1, quick=True)


def _json(summary: dict) -> dict:
    return json.loads(Path(summary["paths"]["json"]).read_text())


def _table(doc: dict, caption_start: str) -> list[dict]:
    for sec in doc["sections"]:
        for it in sec["items"]:
            if it["kind"] == "table" and it["caption"].startswith(caption_start):
                return it["records"]
    raise AssertionError(f"no table starting {caption_start!r} in the report")


# ------------------------------------------------------------------ airframe
@pytest.mark.slow
def test_airframe_verification_and_holdout(airframe):
    assert 3.7 <= airframe["verification_order"] <= 4.3
    lo, hi = airframe["coverage_band"]
    assert lo <= airframe["coverage"] <= hi, airframe["coverage"]
    assert airframe["n_holdout"] >= 30
    # the hold-out (longest cracks) lies beyond the calibrated crack lengths: flagged
    assert airframe["fraction_extrapolated"] == 1.0
    # CRPS well below the spread of lives between specimens (about 1e5 cycles)
    assert 0 < airframe["crps"] < 0.2


@pytest.mark.slow
def test_airframe_paris_exponent_in_published_range(airframe):
    # 2024-T3 literature range as stated in the case-study brief (issue 8): m about 2.9-4
    assert 2.9 <= airframe["m_median"] <= 4.0
    lo, hi = airframe["m_90"]
    assert lo < airframe["m_median"] < hi and hi - lo < 1.5
    # C in (m/cycle)/(MPa m^0.5)^m of order 1e-11..1e-10 for aluminium alloys at these dK
    assert -11.5 < airframe["log10_C_median"] < -9.5


@pytest.mark.slow
def test_airframe_inspection_interval_meets_chance_constraint(airframe):
    assert airframe["decision_feasible"]
    assert airframe["pf_subset"] <= 1e-4
    # importance sampling (independent estimator) agrees within a factor of 10
    assert 0.1 < airframe["pf_importance"] / airframe["pf_subset"] < 10
    # the exact posterior predictive draws see no failure at the interval either
    assert airframe["pf_mc_upper"] < 0.02
    # a 1e-4 interval lies well below the median life (lives vary by ~+-15% between panels)
    assert 0.2 * airframe["life_median_cycles"] < airframe["interval_cycles"] < 0.9 * airframe["life_median_cycles"]
    # the crack at the next inspection is, even in its 1% tail, shorter than critical
    assert 9.0 < airframe["crack_cvar99_mm"] < 49.8


@pytest.mark.slow
def test_airframe_report_written(airframe):
    doc = _json(airframe)
    assert doc["seed"] == 1
    rows = _table(doc, "Population Paris parameters")
    assert rows[0]["this twin, median"] == pytest.approx(airframe["m_median"])
    prov = doc["summary"]["data_provenance"][0]
    assert prov["file"] == "virkler_crack_growth.csv" and prov["checksum_verified"] is True
    html = Path(airframe["paths"]["html"]).read_text()
    assert "Not done in this run" in html and html.count("data:image/png;base64") >= 3


def test_airframe_bad_input_is_refused(tmp_path):
    from case_studies.airframe.run import run

    with pytest.raises(ValueError, match="n_specimens must be in 2..68"):
        run(tmp_path, tmp_path, n_specimens=1)
    with pytest.raises(ValueError, match="a_crit_mm must lie between"):
        run(tmp_path, tmp_path, a_crit_mm=80.0)
    with pytest.raises(DataDirectoryError, match="virkler_crack_growth.csv"):
        run(tmp_path, tmp_path / "out")


# ------------------------------------------------------------------ reproducibility
@pytest.mark.slow
@pytest.mark.parametrize("case", ["airframe"])
def test_same_seed_same_numbers(case, request, data_dir, tmp_path):
    import importlib

    first = request.getfixturevalue(case)
    again = importlib.import_module(f"case_studies.{case}.run").run(data_dir, tmp_path, seed=1, quick=True)
    keys = [k for k, v in first.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert len(keys) >= 8
    for k in keys:
        assert again[k] == first[k], k
    a, b = _json(first), _json(again)
    assert a["sections"] == b["sections"]
