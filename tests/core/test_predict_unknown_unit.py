"""The unknown-unit error of ``predict`` lists the known units, truncated with an ellipsis and
the total count when there are many (issue 20, item 5). Raised before any model is built."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import xarray as xr

import vvuq_twin as vt
from vvuq_twin.exceptions import DataValidationError
from vvuq_twin.inference.results import TwinResult


def _result(n_units: int) -> TwinResult:
    sim = vt.PytensorSimulator(lambda x, p: p["a"] * x[:, 0], name="line")
    twin = vt.Twin("line", sim, [vt.Parameter("a", vt.NormalPrior(0.0, 1.0), per_unit=True,
                                              pop_scale=0.1)],
                   observation=vt.GaussianObs(sigma=0.1), hierarchy=vt.Hierarchy(dim="unit"))
    units = [f"u{i:02d}" for i in range(n_units)]
    data = vt.TwinData(x=np.tile([[1.0], [2.0]], (n_units, 1)), y=np.zeros(2 * n_units),
                       unit=np.repeat(units, 2), input_names=("x",))
    post = xr.Dataset({"a_mu": (("chain", "draw"), np.zeros((1, 4)))},
                      coords={"chain": [0], "draw": np.arange(4)})
    return TwinResult(idata=az.InferenceData(posterior=post), twin=twin, data=data,
                      declaration_hash=twin.hash, data_hash=data.hash)


def test_unknown_unit_error_truncates_with_ellipsis_and_count():
    with pytest.raises(DataValidationError) as ei:
        vt.predict(_result(12), np.array([[1.0]]), unit="nope", rng=0, progressbar=False)
    msg = str(ei.value)
    assert "Unknown unit(s) ['nope']" in msg
    known = [f"u{i:02d}" for i in range(10)]
    assert f"known units: {known} ... (12 in all)" in msg  # first ten, then the ellipsis
    assert "u10" not in msg and "u11" not in msg
    assert "unit='new'" in msg  # how to fix it


def test_unknown_unit_error_lists_few_units_whole():
    with pytest.raises(DataValidationError) as ei:
        vt.predict(_result(3), np.array([[1.0], [2.0]]), unit=["u01", "zz"], rng=0, progressbar=False)
    msg = str(ei.value)
    assert "Unknown unit(s) ['zz']; known units: ['u00', 'u01', 'u02']." in msg
    assert "..." not in msg
