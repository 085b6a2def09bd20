"""Names: derived quantities carry the caller's name; common guesses are aliases or hinted."""

import numpy as np
import pytest
import xarray as xr

import vvuq_twin as vt
import vvuq_twin.validation as val
from vvuq_twin.risk import superquantile


def _zeta():
    rng = np.random.default_rng(0)
    return xr.DataArray(rng.normal(size=(2, 500, 4)), dims=("chain", "draw", "obs"), name="zeta")


def test_superquantile_of_derived_quantity_carries_callers_name():
    peak = _zeta().max("obs")
    assert peak.name == "zeta"  # xarray keeps the source name through the reduction
    ds = superquantile(peak, 0.9, name="peak_zeta")
    assert ds.attrs["variable"] == "peak_zeta" and "variable_note" not in ds.attrs
    # the estimate is the mean of the worst 10 % of the draws (n (1 - alpha) = 100 exactly)
    worst = np.sort(peak.values.ravel())[-100:]
    assert float(ds["estimate"]) == pytest.approx(worst.mean(), rel=1e-12)
    unnamed = superquantile(peak, 0.9)
    assert unnamed.attrs["variable"] == "zeta" and "name='...'" in unnamed.attrs["variable_note"]
    est = superquantile(peak.values.ravel(), 0.9, name="peak_zeta")
    assert est.params["variable"] == "peak_zeta" and est.estimate == pytest.approx(worst.mean())


def test_coverage_alias_and_did_you_mean():
    assert val.coverage is val.interval_coverage
    y = np.random.default_rng(1).normal(size=(400, 3))
    got = val.coverage(y, np.zeros(3), prob=0.5)
    assert float(got["coverage"]) == 1.0  # 0 is inside every central 50 % interval of N(0, 1)
    with pytest.raises(AttributeError, match="has no attribute 'pit_test'. Did you mean 'pit_uniformity'"):
        val.pit_test
    with pytest.raises(AttributeError, match="Did you mean 'interval_coverage'"):
        val.interval_coverag
    with pytest.raises(AttributeError, match="Did you mean 'Poisson'"):
        vt.Poison
