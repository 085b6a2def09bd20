"""Small additions to the loop: Validate's CRPS, the SBC step with calibrate options, and the
quantile-band figure builder."""

import sys
from pathlib import Path

import numpy as np
import pytest

from vvuq_twin.loop import Calibrate, DataSplit, Validate, VVUQLoop
from vvuq_twin.loop.figures import quantile_band_figure
from vvuq_twin.validation import crps_gaussian

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _line import line_data as _data, line_twin  # noqa: E402


@pytest.fixture(scope="module")
def twin():
    return line_twin()


def test_validate_reports_the_crps_of_its_predictive(twin, tmp_path):
    """The mean CRPS of the hold-out equals the closed-form Gaussian CRPS of the (nearly
    Gaussian) posterior predictive within 5%; a shifted hold-out scores worse. (The SBC step with
    calibrate options is the slow ``test_sbc_step_runs_sbc_on_the_calibration_design``.)"""
    cal = _data(np.linspace(0.0, 1.0, 20), 1)
    hold = _data(np.linspace(0.05, 0.95, 40), 2)
    shifted = _data(np.linspace(0.05, 0.95, 40), 2, shift=0.3)
    steps = [Calibrate(draws=500, tune=500, chains=2), Validate(), Validate("shifted", data=shifted)]
    res = VVUQLoop(twin, DataSplit(cal, hold), steps, seed=3, progress=False).run()
    post = res.objects["calibrate"].posterior
    th, sg = post["theta"].values.ravel(), post["sigma_obs"].values.ravel()
    x = hold.x[:, 0]
    mu = th.mean() * x
    sd = np.sqrt(np.mean(sg**2) + th.var() * x**2)
    ref = float(np.mean(crps_gaussian(mu, sd, hold.y)))
    assert res["validate"].values["crps"] == pytest.approx(ref, rel=0.05)
    assert res["shifted"].values["crps"] > 2 * res["validate"].values["crps"]


def test_quantile_band_figure_labels_axes_and_refuses_mismatched_arrays():
    x = np.arange(10.0)
    fig = quantile_band_figure(x, x, x - 1, x + 1, xlabel="year", ylabel="delta", spread=np.ones(10))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "year" and ax.get_ylabel() == "delta" and fig.axes[1].get_ylabel() == "sd"
    with pytest.raises(ValueError, match="one shape"):
        quantile_band_figure(x, x[:5], x, x, xlabel="a", ylabel="b")


def test_every_shared_figure_builder_returns_its_figure():
    """Each builder returns the matplotlib Figure it drew (a report refuses anything else)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from vvuq_twin.loop import figures

    x = np.linspace(0.0, 1.0, 5)
    made = {
        "quantile_band_figure": figures.quantile_band_figure(x, x, x - 0.1, x + 0.1, xlabel="t", ylabel="y",
                                                             spread=0.2 + 0 * x, provisional=True),
        "predictive_curve_figure": figures.predictive_curve_figure(x, x - 0.1, x, x + 0.1, observed=x[None, :]),
        "predictive_band_figure": figures.predictive_band_figure(
            {"y": list(x), "lower": list(x - 0.1), "upper": list(x + 0.1), "median": list(x)}),
        "index_bar_figure": figures.index_bar_figure([{"parameter": "a", "delta": 0.5}, {"parameter": "b", "delta": 0.1}]),
    }
    assert set(made) == set(figures.__all__)
    for name, fig in made.items():
        assert isinstance(fig, Figure), name
