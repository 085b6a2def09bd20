"""The worked hierarchical ODE example (examples/theophylline.py) runs from one command,
passes sampler diagnostics, scores the held-out subject and lands near the published
population estimates (slow: one full calibration)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "theophylline.py"


def _load():
    spec = importlib.util.spec_from_file_location("theophylline_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_theophylline_data_is_the_published_table():
    d = _load().load_theoph()
    assert d["conc"].size == 132 and len(set(d["subject"])) == 12
    # R datasets::Theoph: subject 1's first and last rows, subject 12's peak
    assert (d["wt"][0], d["dose"][0], d["time"][10], d["conc"][10]) == (79.6, 4.02, 24.37, 3.28)
    assert float(d["conc"][d["subject"] == "12"].max()) == 9.75
    assert math.isclose(float(d["conc"].sum()), 654.78, abs_tol=0.005)  # checksum of the table


@pytest.mark.slow
def test_theophylline_example_runs_passes_diagnostics_and_scores_holdout(tmp_path):
    out = _load().main(["--out", str(tmp_path), "--no-progress"])
    assert out["diagnostics_passed"], out["diagnostics"]
    assert out["n_unreliable_predictive_draws"] == 0
    assert np.isfinite(out["holdout_crps_mean"]) and 0 < out["holdout_crps_mean"] < 2.0
    assert out["holdout_coverage90"] >= 0.6
    # Pinheiro & Bates (2000, sec. 6.4), nlme fit of all 12 subjects: log ka 0.45, log ke
    # -2.43, log Cl -3.21 (so V = Cl/ke ~ 0.46 L/kg); ours holds one subject out and pools ke
    # instead of Cl, hence the loose bands
    pm_ = out["posterior_mean"]
    assert abs(pm_["ka_mu"] - 0.45) < 0.4
    assert abs(pm_["ke_mu"] - (-2.43)) < 0.25
    assert abs(pm_["V"] - 0.46) < 0.1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["holdout"] == "12" and (tmp_path / "result.nc").exists()
