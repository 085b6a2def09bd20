import numpy as np
import pytest

import vvuq_twin as vt


def bo14_data(seed: int = 1):
    """Brynjarsdottir & O'Hagan (2014): reality theta*x/(1+x/a), theta=0.65, a=20."""
    x = np.linspace(0.4, 4.0, 11)
    rng = np.random.default_rng(seed)
    y = 0.65 * x / (1 + x / 20.0) + rng.normal(0.0, 0.01, x.size)
    return vt.TwinData(x=x, y=y)


def bo14_twin(disc):
    sim = vt.PytensorSimulator(lambda x, p: p["theta"] * x[:, 0], name="linear")
    return vt.Twin("bo14", sim, [vt.Parameter("theta", vt.Normal(0.5, 0.5))],
                   discrepancy=disc, observation=vt.Gaussian(sigma=0.01))


@pytest.fixture(scope="session")
def bo14_results():
    data = bo14_data()
    out = {}
    discs = {
        "none": vt.NoDiscrepancy(),
        "gp": vt.GPDiscrepancy(ls=vt.LogNormal(0.0, 1.0), eta=vt.HalfNormal(1.0)),
        "constrained": vt.GPDiscrepancy(ls=vt.LogNormal(0.0, 1.0), eta=vt.HalfNormal(1.0),
                                        constraint="value_and_slope"),
    }
    for k, d in discs.items():
        out[k] = vt.calibrate(bo14_twin(d), data, rng=11, draws=1000, tune=1000, chains=2,
                              warn=False)
    return out
