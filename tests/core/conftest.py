import pytest

import vvuq_twin as vt
from vvuq_twin.testing.problems_core import bo2014_data, bo2014_twin


@pytest.fixture(scope="session")
def bo14_results():
    """Brynjarsdottir & O'Hagan (2014) fitted with no, vague-GP and constrained-GP discrepancy."""
    data = bo2014_data(seed=1)
    out = {}
    discs = {
        "none": vt.NoDiscrepancy(),
        "gp": vt.GPDiscrepancy(ls=vt.LogNormal(0.0, 1.0), eta=vt.HalfNormal(1.0)),
        "constrained": vt.GPDiscrepancy(ls=vt.LogNormal(0.0, 1.0), eta=vt.HalfNormal(1.0),
                                        constraint="value_and_slope"),
    }
    for k, d in discs.items():
        out[k] = vt.calibrate(bo2014_twin(d), data, rng=11, draws=1000, tune=1000, chains=2,
                              warn=False)
    return out
