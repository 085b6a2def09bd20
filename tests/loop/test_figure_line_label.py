"""quantile_band_figure names its central line (new keyword, old default kept)."""

import numpy as np


def test_quantile_band_figure_line_label_defaults_to_median_and_can_be_named():
    import matplotlib

    matplotlib.use("Agg")
    from vvuq_twin.loop.figures import quantile_band_figure

    x = np.arange(5.0)
    labels = lambda fig: [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels(quantile_band_figure(x, x, x - 1, x + 1, xlabel="t", ylabel="y")) == ["5-95% band", "median"]
    fig = quantile_band_figure(x, x, x - 1, x + 1, xlabel="t", ylabel="y", label="+-2 SE", line_label="difference")
    assert labels(fig) == ["+-2 SE", "difference"]
