"""The worked black-box example (examples/boarding_school.py) end to end (slow)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "boarding_school.py"


def _load():
    spec = importlib.util.spec_from_file_location("boarding_school_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_data_typed_in_as_published():
    mod = _load()
    # BMJ 1978 1(6112):587, as in R outbreaks::influenza_england_1978_school$in_bed
    assert mod.IN_BED.tolist() == [3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4]
    assert mod.N_BOYS == 763 and mod.DAYS.tolist() == list(range(1, 15))
    # the black box (solve_ivp, LSODA) against an independent fixed-step RK4 of the same SIR
    beta, gamma, n = 1.66, 1 / 2.2, 763.0
    y, h, ref = np.array([n - 1, 1.0, 0.0]), 1e-3, []

    def f(y):
        inf = beta * y[0] * y[1] / n
        return np.array([-inf, inf - gamma * y[1], gamma * y[1]])

    for _ in range(14):
        for _ in range(1000):
            k1 = f(y); k2 = f(y + h / 2 * k1); k3 = f(y + h / 2 * k2); k4 = f(y + h * k3)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        ref.append(y[1])
    x = np.arange(14, 0, -1, dtype=float)[:, None]  # any row order
    i = mod.sir_in_bed(x, {"beta": beta, "gamma": gamma})
    np.testing.assert_allclose(i, np.array(ref)[::-1], rtol=1e-5)
    assert int(np.argmax(i[::-1])) + 1 == 6  # the peak day of the observed series


@pytest.mark.slow
def test_boarding_school_runs_saves_reloads_and_scores(tmp_path):
    mod = _load()
    s = mod.run(tmp_path, particles=600, runs=2, seed=1978)
    assert s["sampler"] == "smc" and s["sampler_choice"] and "no `jacobian`" in s["sampler_choice"][0]
    assert s["diagnostics_passed"], s["diagnostics"]
    assert s["reloaded_equal"] and Path(s["result_file"]).exists()
    assert json.loads((tmp_path / "summary.json").read_text())["wall_time_s"]["total"] > 0
    # published: R0 about 3.65 and an infectious period of about 2.2 days (Keeling & Rohani 2008)
    r0 = s["R0_mean"]
    assert 3.2 < r0 < 4.1
    assert 1.8 < 1 / s["posterior_mean"]["gamma"] < 2.6
    h = s["held_out"]
    assert h["observed"] == [29.0, 14.0, 4.0] and len(h["crps"]) == 3
    assert all(np.isfinite(h["crps"])) and all(np.isfinite(h["log_predictive_density"]))
