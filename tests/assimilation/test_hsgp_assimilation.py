"""Assimilation into a twin with an HSGP discrepancy uses the calibration basis for new batches.

Known answer: with conditionally independent observations, the log-likelihood of a batch equals
log p(all calibration data) - log p(the data without the batch rows), for the same parameters;
a one-point batch gives a finite value (it gave NaN when the basis was refitted to the batch).
"""

import numpy as np
import pytensor.tensor as pt

import vvuq_twin as vt
from vvuq_twin.assimilation import TwinLogDensity, assimilate


def _twin():
    sim = vt.PytensorSimulator(lambda X, p: p["a"] * pt.sqrt(X[:, 0]), name="sqrt_law")
    return vt.Twin("hsgp_assim", sim, [vt.Parameter("a", vt.Normal(1.0, 1.0))],
                   discrepancy=vt.HSGPDiscrepancy(m=8, eta=vt.HalfNormal(0.3)),
                   observation=vt.Gaussian(sigma=0.1))


def _data(rng):
    x = np.linspace(0.5, 5.0, 25)
    y = 1.2 * np.sqrt(x) + 0.2 * np.sin(x) + rng.normal(0, 0.1, x.size)
    return vt.TwinData(x=x, y=y)


def test_batch_likelihood_uses_the_calibration_basis():
    rng = np.random.default_rng(0)
    twin, data = _twin(), _data(rng)
    frozen = twin.with_frozen_discrepancy(data)
    assert frozen.hash == twin.hash  # geometry derived from the data is not part of the declaration
    dens = TwinLogDensity(frozen, input_names=list(data.input_names))
    full = {"x": data.x, "y": data.y}
    model = frozen.build_model(data, check=False)
    nb = int(model["delta_hsgp_coeffs"].shape.eval()[0])
    theta = {"a": rng.normal(1.2, 0.1, 6), "delta_hsgp_coeffs": rng.normal(size=(6, nb)),
             "delta_ls": np.full(6, 1.5), "delta_eta": np.full(6, 0.2)}
    for rows in ([0], [0, 13, 24]):  # batches at the edge of the calibration range
        keep = np.setdiff1d(np.arange(data.n), rows)
        batch = {"x": data.x[rows], "y": data.y[rows]}
        rest = {"x": data.x[keep], "y": data.y[keep]}
        lb = dens.log_likelihood(theta, batch)
        assert np.all(np.isfinite(lb))
        np.testing.assert_allclose(lb, dens.log_likelihood(theta, full) - dens.log_likelihood(theta, rest),
                                   rtol=1e-8, atol=1e-8)


def test_assimilating_one_point_into_an_hsgp_twin():
    rng = np.random.default_rng(1)
    twin, data = _twin(), _data(rng)
    res = vt.calibrate(twin, data, draws=300, tune=300, chains=2, rng=2, warn=False)
    new = vt.TwinData(x=np.array([5.5]), y=np.array([1.2 * np.sqrt(5.5) + 0.2 * np.sin(5.5)]))
    state = assimilate(res, new, rng=3)
    rep = state.reports[-1]
    assert rep.status in ("reweighted", "resample-move") and np.isfinite(rep.ess_final), rep
    upd = state.to_result(rng=4)
    assert upd.data.n == data.n + 1
    pred = vt.predict(upd, np.array([5.5]), rng=5, domain=None)
    # the update pulls the true process at the new point towards the measurement
    before = vt.predict(res, np.array([5.5]), rng=5, domain=None)
    err_after = abs(float(pred["zeta"].mean()) - float(new.y[0]))
    err_before = abs(float(before["zeta"].mean()) - float(new.y[0]))
    assert err_after <= err_before + 0.02


def test_time_order_is_checked_per_unit():
    """Unit B's new reading may be earlier than unit A's latest, but not earlier than B's own."""
    from types import SimpleNamespace

    import pytest
    import xarray as xr

    from vvuq_twin.exceptions import DataValidationError

    twin = vt.Twin("per_unit_time", vt.PytensorSimulator(lambda X, p: p["k"] * X[:, 0], name="lin"),
                   [vt.Parameter("k", vt.Normal(1, 1), per_unit=True)],
                   observation=vt.Gaussian(sigma=0.1), hierarchy=vt.Hierarchy())
    old = vt.TwinData(x=np.array([1.0, 2.0, 9.0, 1.0, 3.0]), y=np.ones(5),
                      unit=np.array(["A", "A", "A", "B", "B"]), input_names=["time"])
    fake = SimpleNamespace(twin=twin, data=old, idata=SimpleNamespace(
        posterior=xr.Dataset(coords={"unit": ["A", "B"]})))
    with pytest.raises(DataValidationError, match="of unit 'B' starts at time=2.0"):
        assimilate(fake, vt.TwinData(x=np.array([2.0]), y=np.ones(1), unit=np.array(["B"]), input_names=["time"]),
                   time_input="time")
    # B at time 4 (> B's last 3, < A's last 9) passes the order check: the failure is further on
    with pytest.raises(Exception) as info:
        assimilate(fake, vt.TwinData(x=np.array([4.0]), y=np.ones(1), unit=np.array(["B"]), input_names=["time"]),
                   time_input="time")
    assert "starts at" not in str(info.value)
