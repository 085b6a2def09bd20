"""The shared predictive-curve builder draws what it is given and refuses mismatched shapes."""

import numpy as np
import pytest


def test_predictive_curve_figure_draws_band_median_and_curves():
    from vvuq_twin.loop.figures import predictive_curve_figure

    x = np.linspace(0.0, 1.0, 5)
    fig = predictive_curve_figure(x, x - 1, x, x + 1, observed=np.vstack([x, 2 * x]), xlabel="a (mm)",
                                  ylabel="cycles")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "a (mm)" and ax.get_ylabel() == "cycles"
    lines = ax.get_lines()
    assert len(lines) == 3  # two observed curves and the median
    np.testing.assert_allclose(lines[-1].get_ydata(), x)
    np.testing.assert_allclose(lines[1].get_ydata(), 2 * x)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_predictive_curve_figure_refuses_mismatched_shapes():
    from vvuq_twin.loop.figures import predictive_curve_figure

    with pytest.raises(ValueError, match="one shape"):
        predictive_curve_figure([0, 1, 2], [0, 1], [0, 1, 2], [0, 1, 2])
