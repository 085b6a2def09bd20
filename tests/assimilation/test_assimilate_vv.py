"""assimilate(..., gate=, drift=): the data-quality gate, CUSUM drift detection and coverage on
every update, recorded in the ledger; a refused batch is kept, never assimilated."""

from __future__ import annotations

import numpy as np
import pytest

from vvuq_twin.testing.problems_assim import ExponentialDecay


@pytest.fixture(scope="module")
def decay_stream():
    from vvuq_twin import calibrate
    from vvuq_twin.assimilation import assimilate
    from vvuq_twin.validation import calibrate_cusum

    model = ExponentialDecay()
    batches = model.simulate(6, 5, rng=1)
    res = calibrate(model.twin(), model.twin_data(batches[:1]), draws=300, chains=2, rng=1,
                    posterior_predictive=False, warn=False)
    base = assimilate(res, model.twin_data(batches[1:2]), rng=1)
    det = calibrate_cusum(horizon=50, false_alarm=0.05, n_sim=4000, rng=0)
    return model, batches, base, det


def _td(x, y):
    from vvuq_twin import TwinData

    return TwinData(x=np.asarray(x, float), y=np.asarray(y, float), input_names=["time"])


def _latest(ledger, name):
    (e,) = ledger.latest(name=name, kind="assimilation")
    return e


def test_clean_batch_passes_gate_and_drift(decay_stream):
    from vvuq_twin.assimilation import assimilate
    from vvuq_twin.validation import DataQualityGate

    model, batches, base, det = decay_stream
    n0 = len(base.ledger.entries)
    out = assimilate(base, model.twin_data(batches[2:3]), gate=DataQualityGate(lower=0.0),
                     drift=det, rng=2)
    assert out.rejected == [] and len(out.reports) == 2 and out.data.n == base.data.n + 5
    names = [e.name for e in out.ledger.entries[n0:]]
    assert names == ["quality_gate", "drift_cusum", "coverage_90"]
    assert _latest(out.ledger, "quality_gate").passed is True
    drift_e = _latest(out.ledger, "drift_cusum")
    assert drift_e.passed is True and drift_e.result["max_statistic"] <= det.h
    assert _latest(out.ledger, "coverage_90").passed is True
    assert out.pit_history.shape == (5,) and np.all((out.pit_history > 0) & (out.pit_history < 1))
    # the CUSUM state carries on: a second clean batch extends the same stream
    out2 = assimilate(out, model.twin_data(batches[3:4]), gate=DataQualityGate(lower=0.0),
                      drift=det, rng=3)
    assert out2.pit_history.shape == (10,)
    np.testing.assert_array_equal(out2.pit_history[:5], out.pit_history)
    assert _latest(out2.ledger, "drift_cusum").result["stream_length"] == 10
    # the input is not modified
    assert len(base.ledger.entries) == n0 and base.pit_history.size == 0


def test_stuck_and_impossible_batch_is_rejected_and_kept(decay_stream):
    from vvuq_twin.assimilation import assimilate
    from vvuq_twin.validation import DataQualityGate

    model, batches, base, det = decay_stream
    t = batches[2]["time"].values
    bad = _td(t, [0.5, 0.5, 0.5, 0.5, -0.2])
    gate = DataQualityGate(lower=0.0, max_run=3)
    out = assimilate(base, bad, gate=gate, drift=det, rng=2)  # raises nothing
    assert len(out.rejected) == 1
    rej = out.rejected[0]
    assert rej["data"] is bad and rej["batch_index"] == 1
    text = " | ".join(rej["reasons"])
    assert "stuck sensor: 4 identical consecutive values" in text
    assert "impossible value(s) below the physical lower bound 0.0 at index 4" in text
    # posterior bitwise unchanged, nothing assimilated
    for k, v in base.particles.values.items():
        np.testing.assert_array_equal(out.particles.values[k], v)
    np.testing.assert_array_equal(out.particles.log_weights, base.particles.log_weights)
    assert out.data.hash == base.data.hash and len(out.reports) == len(base.reports)
    assert len(out.chunks) == len(base.chunks) and out.pit_history.size == 0
    e = _latest(out.ledger, "quality_gate")
    assert e.passed is False and e.data_hash == bad.hash and e.result["reasons"] == rej["reasons"]
    assert out.ledger.latest(name="drift_cusum") == []  # no drift check on a refused batch
    # the rejected list persists through a later, accepted update
    out2 = assimilate(out, model.twin_data(batches[2:3]), gate=gate, drift=det, rng=3)
    assert len(out2.rejected) == 1 and len(out2.reports) == 2
    assert _latest(out2.ledger, "quality_gate").passed is True


def test_offset_batch_raises_drift_alarm_in_ledger(decay_stream):
    from vvuq_twin.assimilation import assimilate
    from vvuq_twin.validation import DataQualityGate

    model, batches, base, det = decay_stream
    shifted = _td(batches[2]["time"].values, batches[2]["y"].values + 0.6)  # 6 noise sd
    out = assimilate(base, shifted, drift=det, rng=2)
    e = _latest(out.ledger, "drift_cusum")
    assert e.passed is False and e.result["alarm"] is True
    assert e.result["max_statistic"] > det.h and e.result["alarm_obs"][0] <= 2
    assert _latest(out.ledger, "coverage_90").result["coverage"] == 0.0
    assert _latest(out.ledger, "coverage_90").passed is False
    assert len(out.reports) == 2  # drift is reported, the update still runs
    assert out.ledger.status(model.twin()) and "drift_cusum" in out.ledger.summary()
    # with the gate on, the same offset is refused as a sudden offset
    gated = assimilate(base, shifted, gate=DataQualityGate(lower=0.0), drift=det, rng=2)
    assert len(gated.rejected) == 1 and "sudden offset" in gated.rejected[0]["reasons"][0]


def test_default_is_unchanged_and_reproducible(decay_stream):
    from vvuq_twin.assimilation import assimilate

    model, batches, base, det = decay_stream
    a = assimilate(base, model.twin_data(batches[2:3]), rng=7)
    b = assimilate(base, model.twin_data(batches[2:3]), gate=None, drift=None, rng=7)
    for k in a.particles.values:
        np.testing.assert_array_equal(a.particles.values[k], b.particles.values[k])
    assert len(a.ledger.entries) == len(base.ledger.entries) and a.pit_history.size == 0
    c = assimilate(base, model.twin_data(batches[2:3]), drift=det, rng=7)
    d = assimilate(base, model.twin_data(batches[2:3]), drift=det, rng=7)
    np.testing.assert_array_equal(c.pit_history, d.pit_history)
    with pytest.raises(ValueError, match="n_predictive"):
        assimilate(base, model.twin_data(batches[2:3]), drift=det, n_predictive=5)
